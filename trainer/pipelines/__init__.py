"""The fixed methods as complete procedures around the shared trainer (each one command, resumable):

    python -m trainer.pipelines.spin       SPIN self-play iterations (real vs generated, the ``spin`` loss)
    python -m trainer.pipelines.spa        SPA: seed DPO, then self-annotated iterations (the ``spa`` loss)
    python -m trainer.pipelines.aepo       AEPO: diverse-MBR subsampling + annotation of k of N responses
    python -m trainer.pipelines.granular   granular (token-masked) DPO/TDPO from the masked-region format
    python -m trainer.pipelines.compare    SPIN / SPA / AEPO+DPO vs DPO on the embedded verifiable task

``baselines.BASELINES`` exposes every method to the search loop with one signature."""

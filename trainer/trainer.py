"""``PreferenceTrainer``: TRL's ``DPOTrainer`` with the loss taken from the registry (or any callable).

One code path trains DPO, TRL's other loss types, SimPO, ORPO, KTO-pair, the DiscoPOP losses, SPIN, SPA, TDPO, the
granular losses and every discovered loss: the policy forward, the per-token log-probs and the metrics are shared;
only the loss function differs. The optional inputs a spec declares (completion lengths, no reference, per-token KL,
token weights, extrapolated log-probs) are computed here and given only to the losses that declare them."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import hash_module, pad, selective_log_softmax

from trainer.data import span_token_weights
from trainer.losses import LossInputs, LossSpec, discovered_loss_spec, get_loss_spec
from trainer.preference_config import PreferenceConfig
from trainer.refcache import CacheKey, ReferenceCache, attach, dataset_fingerprint

log = logging.getLogger(__name__)

SPAN_COLUMNS = ("chosen_span", "rejected_span")
WEIGHT_COLUMNS = ("chosen_weights", "rejected_weights")


class CandidateDiverged(RuntimeError):
    """Training produced a non-finite loss or gradient."""

    def __init__(self, step: int, what: str, value: float) -> None:
        super().__init__(f"diverged at step {step}: {what} is {value}")
        self.step, self.what, self.value = step, what, value

    def __reduce__(self):  # pickled with its fields (a Ray Train worker hands it back to the launcher)
        return type(self), (self.step, self.what, self.value)


class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's collator plus ``token_weights`` aligned with ``input_ids`` (0 on prompt and padding)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        rows = [[0.0] * len(e["prompt_ids"]) + list(e["chosen_weights"]) for e in examples]
        rows += [[0.0] * len(e["prompt_ids"]) + list(e["rejected_weights"]) for e in examples]
        if self.max_length is not None:
            sl = (
                slice(None, self.max_length)
                if self.truncation_mode == "keep_start"
                else slice(-self.max_length, None)
            )
            rows = [r[sl] for r in rows]
        weights = pad(
            [torch.tensor(r, dtype=torch.float32) for r in rows], padding_value=0.0, padding_side="right"
        )
        output["token_weights"] = weights[:, : output["input_ids"].shape[1]]
        return output


@torch.no_grad()
def extrapolated_token_logps(
    policy_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    input_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    lam: float,
) -> torch.Tensor:
    """Per-token log-probs of the next-token labels under the extrapolated logits ``(1 + lam) * policy - lam *
    reference`` (SPA's ``mix * policy_logits + (1 - mix) * reference_logits``, ``mix = 1 + lam``), aligned and
    masked like ``PreferenceTrainer._token_logps``: ``(rows, seq - 1)``, 0 outside the completion. Detached."""
    mix = 1.0 + lam
    mixed = mix * policy_logits[:, :-1, :].float() + (1.0 - mix) * reference_logits[:, :-1, :].float()
    return selective_log_softmax(mixed, input_ids[:, 1:]) * completion_mask[:, 1:]


def resolve_loss(loss: str | Callable | LossSpec) -> LossSpec:
    if isinstance(loss, LossSpec):
        return loss
    if isinstance(loss, str):
        return get_loss_spec(loss)
    if callable(loss):
        return discovered_loss_spec(getattr(loss, "__name__", "custom"), loss, source="")
    raise TypeError(f"loss must be a registry name, a LossSpec or a callable, got {type(loss).__name__}")


class PreferenceTrainer(DPOTrainer):
    """``DPOTrainer`` whose ``_compute_loss`` calls a registry loss (sequence- or token-level)."""

    _NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "token_weights"}

    def __init__(
        self,
        model,
        args: PreferenceConfig,
        train_dataset: Dataset,
        processing_class,
        ref_model=None,
        loss: str | Callable | LossSpec | None = None,
        **kwargs: Any,
    ) -> None:
        self.loss_spec = resolve_loss(loss if loss is not None else args.loss)
        params = self.loss_spec.params(**args.loss_params)
        self.loss_fn = self.loss_spec.build(**args.loss_params)
        if "beta" in params and params["beta"] != args.beta:
            log.info("loss %s uses its own beta=%g (not %g)", self.loss_spec.name, params["beta"], args.beta)
            args.beta = params["beta"]
        spec = self.loss_spec
        self.extrapolation = (
            None if spec.extrapolation_param is None else float(params[spec.extrapolation_param])
        )
        # Token-level losses need the reference per token: they run the reference model alongside. Sequence-level
        # losses read the shared reference cache when one is configured. A reference-free loss gets zeros through the
        # same precompute path, so that TRL neither loads nor runs a reference model for it.
        args.precompute_ref_log_probs = spec.reference_free or (
            spec.level == "sequence" and args.ref_cache_dir is not None
        )
        if self.loss_spec.needs_token_weights and kwargs.get("data_collator") is None:
            pad_token = processing_class.pad_token or processing_class.eos_token
            processing_class.pad_token = pad_token
            kwargs["data_collator"] = WeightedPreferenceCollator(
                pad_token_id=processing_class.pad_token_id,
                max_length=args.max_length,
                truncation_mode=args.truncation_mode,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            **kwargs,
        )

    # ---- data ---------------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if len(dataset) == 0:
            raise ValueError(
                f"no {dataset_name} pairs left: every prompt fills max_length={args.max_length} tokens; raise max_length"
            )
        if args.max_prompt_length is not None:
            keep = args.max_prompt_length
            dataset = dataset.map(
                lambda row: {"prompt_ids": row["prompt_ids"][-keep:]}, desc="Truncating prompts"
            )
        present = [c for c in SPAN_COLUMNS if c in dataset.column_names]
        if not self.loss_spec.needs_token_weights:
            return dataset.remove_columns(present)
        tokenizer = self._tokenizer

        def add_weights(example: dict) -> dict:
            out = {}
            for side, column in (("chosen", "chosen_span"), ("rejected", "rejected_span")):
                ids = example[f"{side}_ids"]
                span = example.get(column) or [-1, -1]
                texts = [
                    tokenizer.decode(ids[: i + 1])[len(tokenizer.decode(ids[:i])) :] for i in range(len(ids))
                ]
                out[f"{side}_weights"] = span_token_weights(texts, list(span))
            return out

        return dataset.map(add_weights, remove_columns=present, desc=f"Token weights for {dataset_name}")

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.loss_spec.needs_token_weights:
            self._signature_columns = list(self._signature_columns) + list(WEIGHT_COLUMNS)

    # ---- reference cache ----------------------------------------------------------------------------------------
    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        if self.loss_spec.reference_free:
            self.ref_cache_hit = None
            return attach(dataset, torch.zeros(len(dataset)), torch.zeros(len(dataset)))
        reference = self.ref_model or self.model
        key = CacheKey(
            dataset=dataset_fingerprint(dataset),
            model=hash_module(reference),
            max_length=self.args.max_length,
            truncation_mode=self.args.truncation_mode,
        )
        cache = ReferenceCache(self.args.ref_cache_dir)
        cached = cache.load(key, len(dataset))
        self.ref_cache_hit = cached is not None
        if cached is None:
            cached = self._reference_pass(reference, dataset, batch_size)
            cache.store(key, *cached)
        return attach(dataset, *cached)

    @torch.inference_mode()
    def _reference_pass(
        self, reference, dataset: Dataset, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = reference.training
        reference.eval()
        device = self.accelerator.device
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False)
        chosen, rejected = [], []
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = reference(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
            ).logits
            logps = self._sequence_logps(logits, batch["input_ids"], batch["completion_mask"])
            c, r = logps.chunk(2)
            chosen.append(c.float().cpu())
            rejected.append(r.float().cpu())
        reference.train(was_training)
        return torch.cat(chosen), torch.cat(rejected)

    @staticmethod
    def _token_logps(
        logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor
    ) -> torch.Tensor:
        per_token = selective_log_softmax(logits[:, :-1, :], input_ids[:, 1:])
        return per_token * completion_mask[:, 1:]

    @classmethod
    def _sequence_logps(cls, logits, input_ids, completion_mask) -> torch.Tensor:
        return cls._token_logps(logits, input_ids, completion_mask).sum(-1)

    # ---- loss ---------------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        model_kwargs = {k: v for k, v in inputs.items() if k not in self._NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        outputs = model(**model_kwargs)
        input_ids, completion_mask = inputs["input_ids"], inputs["completion_mask"]
        token_logps = self._token_logps(outputs.logits, input_ids, completion_mask)
        chosen_logps, rejected_logps = token_logps.sum(-1).chunk(2)

        if self.loss_spec.level == "sequence":
            if self.loss_spec.reference_free:
                ref_chosen, ref_rejected = torch.zeros_like(chosen_logps), torch.zeros_like(rejected_logps)
            elif self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                with torch.no_grad():
                    ref_logits = self.ref_model(**model_kwargs).logits
                ref_chosen, ref_rejected = self._sequence_logps(ref_logits, input_ids, completion_mask).chunk(
                    2
                )
            extra = {}
            if self.loss_spec.needs_lengths:
                lengths = completion_mask[:, 1:].sum(-1).to(chosen_logps.dtype)
                extra["chosen_lengths"], extra["rejected_lengths"] = lengths.chunk(2)
            losses = self.loss_fn(chosen_logps, rejected_logps, ref_chosen, ref_rejected, self.beta, **extra)
        else:
            losses, ref_chosen, ref_rejected = self._token_level_losses(
                outputs.logits, token_logps, inputs, model_kwargs
            )

        batch = chosen_logps.shape[0]
        if not isinstance(losses, torch.Tensor) or losses.shape != (batch,):
            shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
            raise ValueError(
                f"loss {self.loss_spec.name!r} must return a tensor of shape ({batch},), got {shape}"
            )
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise CandidateDiverged(self.state.global_step + 1, "the loss", float(loss.detach()))
        self._log_reward_metrics(mode, chosen_logps, rejected_logps, ref_chosen, ref_rejected)
        return (loss, outputs) if return_outputs else loss

    def _token_level_losses(self, logits, token_logps, inputs, model_kwargs):
        input_ids, completion_mask = inputs["input_ids"], inputs["completion_mask"]
        with torch.no_grad():
            ref_logits = self.ref_model(**model_kwargs).logits
        ref_token_logps = self._token_logps(ref_logits, input_ids, completion_mask)
        mask = completion_mask[:, 1:].to(token_logps.dtype)
        chosen_kl = rejected_kl = None
        if self.loss_spec.needs_kl:
            ref_full = torch.log_softmax(ref_logits[:, :-1, :].float(), dim=-1)
            policy_full = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)
            kl = (ref_full.exp() * (ref_full - policy_full)).sum(-1) * mask
            chosen_kl, rejected_kl = kl.chunk(2)
        extrapolated_c = extrapolated_r = None
        if self.extrapolation is not None:
            extrapolated = extrapolated_token_logps(
                logits, ref_logits, input_ids, completion_mask, self.extrapolation
            )
            extrapolated_c, extrapolated_r = extrapolated.chunk(2)
        chosen_weights = rejected_weights = None
        if "token_weights" in inputs:
            chosen_weights, rejected_weights = inputs["token_weights"][:, 1:].chunk(2)
        policy_c, policy_r = token_logps.chunk(2)
        ref_c, ref_r = ref_token_logps.chunk(2)
        mask_c, mask_r = mask.chunk(2)
        loss_inputs = LossInputs(
            policy_chosen_token_logps=policy_c,
            policy_rejected_token_logps=policy_r,
            reference_chosen_token_logps=ref_c,
            reference_rejected_token_logps=ref_r,
            chosen_mask=mask_c,
            rejected_mask=mask_r,
            chosen_weights=chosen_weights,
            rejected_weights=rejected_weights,
            chosen_kl=chosen_kl,
            rejected_kl=rejected_kl,
            extrapolated_chosen_token_logps=extrapolated_c,
            extrapolated_rejected_token_logps=extrapolated_r,
            step=self.state.global_step,
            max_steps=max(1, self.state.max_steps),
        )
        losses = self.loss_fn(loss_inputs, self.beta)
        return losses, loss_inputs.reference_chosen_logps, loss_inputs.reference_rejected_logps

    def _log_reward_metrics(self, mode, chosen_logps, rejected_logps, ref_chosen, ref_rejected) -> None:
        gather = self.accelerator.gather_for_metrics
        chosen_rewards = self.beta * (chosen_logps.detach() - ref_chosen.detach())
        rejected_rewards = self.beta * (rejected_logps.detach() - ref_rejected.detach())
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(
            gather((chosen_rewards > rejected_rewards).float()).mean().item()
        )
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())

    # ---- divergence guard ---------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        """TRL's step, then a stop on a non-finite loss or gradient norm. Under DeepSpeed ZeRO the gradients live
        in the engine's partitions (``p.grad`` is None), so the norm is the engine's global one, computed in the
        optimizer step that accelerate runs inside ``backward`` at each accumulation boundary (inf, NaN, or -1 for
        a non-finite gradient). Under fp16 an overflow is the dynamic loss scaler's business, not a divergence."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        step = self.state.global_step + 1
        if not torch.isfinite(loss).all():
            raise CandidateDiverged(step, "the loss", float(loss.detach().float().sum()))
        engine = getattr(self.accelerator, "deepspeed_engine_wrapped", None)
        if engine is not None:
            norm = engine.get_global_grad_norm()
            invalid = norm is not None and (not math.isfinite(float(norm)) or float(norm) < 0)
            if invalid and not engine.engine.fp16_enabled():
                raise CandidateDiverged(step, "the global gradient norm", float(norm))
            return loss
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads:
            total = torch.stack(torch._foreach_norm(grads)).sum()
            if not torch.isfinite(total):
                raise CandidateDiverged(step, "the gradient norm", float(total))
        return loss

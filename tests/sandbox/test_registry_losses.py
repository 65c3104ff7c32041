"""Every sequence-level loss of the trainer's registry passes the sandbox (policy, execution, gradient tests),
and the sandbox-compiled callable computes the same values as the registry's function."""

import pytest
import torch

from sandbox.compile import compile_loss
from sandbox.validate import validate_source
from trainer.losses import get_loss_spec, loss_names


@pytest.mark.parametrize("name", loss_names("sequence"))
def test_registry_loss_is_valid(name, pool):
    source = get_loss_spec(name).source
    result = validate_source(source, entry=name, pool=pool)
    assert result.valid, f"{name}: [{result.stage}] {result.error}"
    assert result.fingerprint


@pytest.mark.parametrize("name", loss_names("sequence"))
def test_compiled_source_matches_the_registry_function(name):
    spec = get_loss_spec(name)
    compiled = compile_loss(spec.source, entry=name)
    torch.manual_seed(0)
    args = [torch.randn(6) * 5 for _ in range(4)]
    torch.testing.assert_close(compiled(*args, 0.1), spec.build()(*args, 0.1))

#!/usr/bin/env python3
"""A PyTorch BatchNorm1d run written as a bnrepro-trace/1 file, for `bnrepro verify` to diagnose.

Another program's trace, in the documented format (bnrepro/trace/schema.json): a per-channel weight
`h = x * w`, then `torch.nn.BatchNorm1d` with PyTorch's defaults (momentum 0.1, eps 1e-5), MSE loss,
SGD. The header records PyTorch's own momentum, 0.1, and each step's `batch_variance` is what
PyTorch's update consumed, the unbiased variance. PyTorch updates

    running_mean = (1 - momentum) * running_mean + momentum * mean(h)
    running_var  = (1 - momentum) * running_var  + momentum * var_(N-1)(h)

so `bnrepro verify` fails the TF convention (momentum weighs the old value, biased variance) and names
PyTorch's: momentum and 1 - momentum swapped, with the unbiased variance.

Needs PyTorch (`pip install 'bnrepro[torch]'`, i.e. torch==2.13.0); says so and exits with status 2
when it is missing.

    python scripts/pytorch_trace.py --out out/pytorch && bnrepro verify out/pytorch
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from bnrepro.outdir import output_directory
from bnrepro.trace import TRACE_FILE, TraceWriter, make_header

LAYER = "bn"


def _numpy(tensor):
    return tensor.detach().cpu().numpy().astype(np.float32)


def _layer_state(bn):
    return {"moving_mean": _numpy(bn.running_mean), "moving_variance": _numpy(bn.running_var),
            "gamma": _numpy(bn.weight), "beta": _numpy(bn.bias)}


def _variables(model):
    return {name: np.asarray(_numpy(value)) for name, value in model.state_dict().items()
            if value.is_floating_point()}


def write_pytorch_trace(out, *, steps=5, batch_size=8, channels=2, momentum=0.1, eps=1e-5,
                        learning_rate=0.1, seed=0, force=False):
    """Train the BatchNorm1d net for ``steps`` steps; write ``out/trace.jsonl``; return its path."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.ones(channels))
    model.bn = torch.nn.BatchNorm1d(channels, eps=eps, momentum=momentum)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    config = {"steps": steps, "batch_size": batch_size, "channels": channels, "momentum": momentum,
              "eps": eps, "learning_rate": learning_rate, "seed": seed}
    header = make_header("pytorch-batchnorm1d", config, {LAYER: {"momentum": momentum, "epsilon": eps}})
    header["versions"]["torch"] = torch.__version__
    with output_directory(out, force=force) as staging, TraceWriter(staging, header) as writer:
        writer.write_step({"step": 0, "bn": {LAYER: _layer_state(model.bn)},
                           "variables": _variables(model)})
        for step in range(1, steps + 1):
            inputs = rng.normal(1.0, 2.0, (batch_size, channels)).astype(np.float32)  # (N, C)
            targets = rng.normal(0.0, 1.0, (batch_size, channels)).astype(np.float32)
            x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
            model.bn.eval()  # inference mode, with the state before the step
            with torch.no_grad():
                h = x * model.w
                inference = {"input": _numpy(h), "output": _numpy(model.bn(h))}
            model.bn.train()
            h = x * model.w  # (N, C)
            loss = torch.mean((model.bn(h) - y) ** 2)  # updates the running statistics
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            state = _layer_state(model.bn)
            state.update(batch_mean=_numpy(h.mean(dim=0)),
                         batch_variance=_numpy(h.var(dim=0, unbiased=True)),  # what the update used
                         batch_input=_numpy(h))
            writer.write_step({"step": step, "bn": {LAYER: state}, "variables": _variables(model),
                               "loss": np.float32(loss.item()), "inference": {LAYER: inference},
                               "batch": {"inputs": inputs, "targets": targets}})
        writer.finish("complete")
    return f"{out}/{TRACE_FILE}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for trace.jsonl and its arrays")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--steps", type=int, default=5, help="training steps [default: 5]")
    arguments = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("pytorch_trace: PyTorch is not installed: pip install 'bnrepro[torch]' "
              "(torch==2.13.0)", file=sys.stderr)
        return 2
    path = write_pytorch_trace(arguments.out, steps=arguments.steps, force=arguments.force)
    print(f"trace written to {path}; diagnose it with: bnrepro verify {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

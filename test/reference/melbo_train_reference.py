#!/usr/bin/python3
"""Independent MELBO training (docs/algorithm.md §3) in plain torch, the reference for melbo's native loop.

It uses the reference Qwen2 of qwen2_reference.py and torch.optim.AdamW itself (amsgrad=True), one
optimizer per vector, so that melbo's hand-written AdamW is checked against the real thing.

Run with Debian's /usr/bin/python3 (the one with python3-torch):
  melbo_train_reference.py --model DIR --inputs IN.safetensors --out OUT.safetensors
      --source s --target t --radius R --p P --q Q --steps N [--orthogonal] [--float64]
in:  tokens.I i32 [T_I] and positions.I i32 [n_I] for prompts I = 0, 1, ...;
     start f32 [V, d] (start directions); learned f32 [m, d] (earlier vectors, any basis of the
     span; only with --orthogonal)
out: thetas f32 [V, d], trace f32 [steps, V] (F at the start of each step), objectives f32 [V]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qwen2_reference import Qwen2, read_safetensors, write_safetensors  # noqa: E402


def objective(model, examples, theta, source, target, p, q):
    """F(θ) = Σ_i (Σ_{t ∈ I_i} ‖Z_{i,t}(θ) − Z_{i,t}(0)‖₂^p)^{1/q}, θ [d]."""
    total = 0
    for x, positions, z0 in examples:
        h = x[None] + theta[None, None, :]  # [1, T, d]
        cos, sin = model.rope(h.shape[1])
        for i in range(source + 1, target + 1):
            h = model.block(h, i, cos, sin)
        dist = (h[0, positions] - z0).norm(dim=-1)  # [n]: L2 over d, per token
        total = total + (dist ** p).sum() ** (1 / q)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    for name in ["--model", "--inputs", "--out"]:
        ap.add_argument(name, required=True)
    for name in ["--source", "--target", "--steps"]:
        ap.add_argument(name, type=int, required=True)
    for name in ["--radius", "--p", "--q"]:
        ap.add_argument(name, type=float, required=True)
    ap.add_argument("--orthogonal", action="store_true")
    ap.add_argument("--float64", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float64 if a.float64 else torch.float32
    model = Qwen2(a.model, dtype)
    inp = read_safetensors(a.inputs)
    R = a.radius

    examples = []
    with torch.no_grad():
        i = 0
        while f"tokens.{i}" in inp:
            hidden = model.hidden(inp[f"tokens.{i}"])
            positions = inp[f"positions.{i}"].long()
            examples.append((hidden[f"resid.{a.source}"], positions, hidden[f"resid.{a.target}"][positions]))
            i += 1
    # Orthonormal basis Q [m, d] of the learned vectors' span (QR in float64).
    learned = inp.get("learned")
    Q = torch.linalg.qr(learned.double().T).Q.T.to(dtype) if a.orthogonal and learned is not None and learned.shape[0] > 0 else None

    def project_out(v):
        return v if Q is None else v - Q.T @ (Q @ v)

    thetas, traces, finals = [], [], []
    for start in inp["start"].to(dtype):
        with torch.no_grad():
            init = project_out(start)
            theta = (R * init / init.norm()).clone().requires_grad_(True)
        opt = torch.optim.AdamW([theta], lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0, amsgrad=True)
        trace = []
        for _ in range(a.steps):
            opt.zero_grad()
            F = objective(model, examples, theta, a.source, a.target, a.p, a.q)
            trace.append(F.item())
            (-F).backward()
            with torch.no_grad():
                g = project_out(theta.grad)
                g = g - (g @ theta) * theta / R ** 2  # tangent space of the sphere
                theta.grad.copy_(g)
            opt.step()
            with torch.no_grad():
                theta.copy_(project_out(theta))
                theta.mul_(R / theta.norm())
        with torch.no_grad():
            finals.append(objective(model, examples, theta, a.source, a.target, a.p, a.q))
        thetas.append(theta.detach())
        traces.append(torch.tensor(trace))
    write_safetensors(a.out, {
        "thetas": torch.stack(thetas),
        "trace": torch.stack(traces).T.contiguous() if a.steps > 0 else torch.zeros(0, len(thetas)),
        "objectives": torch.stack(finals),
    })


if __name__ == "__main__":
    main()

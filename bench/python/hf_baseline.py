#!/usr/bin/env python3
"""The original MELBO-ortho loop on Hugging Face transformers, for the GPU benchmark (bench/gpu/run.sh).

What a user of the original code runs: a Qwen2ForCausalLM (here the random Qwen1.5-1.8B-shaped
checkpoint the benchmark wrote, Hugging Face layout), frozen; theta added to the output of block
`source` by a forward hook at every position; every step runs blocks 0..target over the prompt
(the layers after `target` are dropped so they cost nothing), z = mean over positions of resid(target)
(the output of block `target`, captured by a hook: hidden_states[-1] would have the final norm),
loss = ||z - z0||_2, torch.optim.Adam(lr 0.01), then theta -= (theta . b_hat) b_hat for the basis
(theta0 alone for the first vector). One vector at a time, as in the original.

  hf_baseline.py --model DIR --inputs DIR/bench-inputs.safetensors [--device cuda] [--dtype bf16|f32] [--steps 20]
prints JSON: per-step wall times (synchronised), losses, and the median of steps 2..N.
"""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True, help="safetensors with tokens (I32 [T]) and theta0 (F32 [d])")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--source", type=int, default=8)
    ap.add_argument("--target", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    a = ap.parse_args()

    from safetensors.torch import load_file  # transformers depends on safetensors
    import transformers
    from transformers import AutoModelForCausalLM

    dev = torch.device(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    inputs = load_file(a.inputs)
    tokens = inputs["tokens"].long().reshape(1, -1).to(dev)
    theta0 = inputs["theta0"].float().to(dev)

    t0 = time.perf_counter()
    # transformers 5 names the argument `dtype`, 4.x `torch_dtype`.
    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(a.model, **{dtype_arg: dtype}).to(dev)
    model.requires_grad_(False)
    model.eval()
    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList(list(layers)[: a.target + 1])  # blocks 0..target only
    model.config.num_hidden_layers = a.target + 1
    load_s = time.perf_counter() - t0

    steer = {"theta": None}
    captured = {}

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    def add_theta(_mod, _inp, out):
        if steer["theta"] is None:
            return out
        h = first(out) + steer["theta"].to(dtype)
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

    def capture(_mod, _inp, out):
        captured["h"] = first(out)

    model.model.layers[a.source].register_forward_hook(add_theta)
    model.model.layers[a.target].register_forward_hook(capture)

    def z_of(theta):
        steer["theta"] = theta
        model.model(input_ids=tokens, use_cache=False)
        return captured["h"].float().mean(1)[0]  # [d]

    with torch.no_grad():
        z0 = z_of(theta0)
    basis = (theta0 / theta0.norm()).reshape(1, -1)
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    times, losses = [], []
    for _ in range(a.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad()
        loss = (z_of(theta) - z0).norm()
        loss.backward()
        opt.step()
        with torch.no_grad():
            theta -= (basis @ theta) @ basis
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(loss.item())

    print(json.dumps({"baseline": "transformers", "transformers": transformers.__version__, "torch": torch.__version__,
                      "device": a.device, "device_name": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
                      "dtype": a.dtype, "steps": a.steps, "load_s": load_s, "times": times, "losses": losses,
                      "step_s": statistics.median(times[1:]) if len(times) > 1 else times[0]}))


if __name__ == "__main__":
    main()

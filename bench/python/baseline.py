#!/usr/bin/python3
"""The Python baseline of melbo's benchmark (bench/run.ts): what a user would run without melbo.

A plain-torch Qwen2 (the maths of Hugging Face's modeling_qwen2.py: RMSNorm in float32, NeoX
RoPE, q/k/v biases, causal softmax in float32, SiLU MLP), reading the same safetensors file the
benchmark wrote for melbo, and the MELBO-ortho loop of the original work on it:

  faithful  every step embeds the prompt and runs blocks 0..source with theta added to
            resid(source), then blocks source+1..target, z = mean over positions of
            resid(target), loss = ||z - z0||_2, torch.optim.Adam(lr 0.01) step, then
            theta -= sum_b (theta . b_hat) b_hat over the basis (projection after the step).
  cached    the same, but resid(source) of the prompt is computed once (the fair variant):
            every step runs only blocks source+1..target.
  batched   cached, with B vectors optimised at once (--block B): the slice runs on [B, T, d],
            the loss is summed over rows (each row's gradient is its own), one Adam over
            [B, d], each row projected off theta0 after the step. What the batched
            re-implementations of MELBO do; bf16 is their usual dtype.

Weights never require gradients (the original freezes the model), so backward computes input
gradients only, exactly like melbo. One vector at a time (B = 1), as in the original.

Subcommands (run with Debian's /usr/bin/python3, which has python3-torch):
  info                      torch version, CPU capability, BLAS, threads (JSON)
  limits                    matrix-product throughput, f32 and bf16, several shapes (JSON)
  loop --model DIR --inputs F --mode faithful|cached|batched --steps N [--block B] [--x-out F]
                            per-step wall times and losses (JSON); --x-out writes resid(source)
                            of the prompt as raw float32 [seq, d] for melbo's parity check
Common: --threads N (default: all cores), --device cpu|cuda, --dtype f32|bf16.
"""
import argparse
import json
import math
import mmap
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch

import warnings

# Tensors over the read-only memory map are only ever copied (.to(..., copy=True)), never written.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

DTYPES = {"F32": (np.float32, 4), "BF16": (np.int16, 2), "F16": (np.float16, 2), "I32": (np.int32, 4),
          "I64": (np.int64, 8), "F64": (np.float64, 8)}


class Safetensors:
    """Reads single tensors of a safetensors file through a memory map (multi-GB files are fine)."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.mm = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", self.mm[:8])
        self.header = json.loads(self.mm[8:8 + n])
        self.base = 8 + n

    def get(self, name, dtype=torch.float32):
        info = self.header[name]
        np_type, size = DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        count = (end - start) // size
        arr = np.frombuffer(self.mm, dtype=np_type, count=count, offset=self.base + start)
        t = torch.from_numpy(arr.reshape(info["shape"]))  # read-only view: copied by .to below
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)  # same bits, 2 bytes each
        return t.to(dtype, copy=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Qwen2:
    """Blocks lo..hi of a Qwen2 checkpoint in `dtype` (RMSNorm and softmax in float32)."""

    def __init__(self, model_dir, lo, hi, dtype, device):
        with open(os.path.join(model_dir, "config.json")) as f:
            c = json.load(f)
        self.d = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.kv = c.get("num_key_value_heads", self.heads)
        self.hd = self.d // self.heads
        self.eps = c["rms_norm_eps"]
        self.dtype, self.device = dtype, device
        st = Safetensors(os.path.join(model_dir, "model.safetensors"))
        self.st = st
        names = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
                 "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
                 "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]
        self.blocks = {}
        for k in range(lo, hi + 1):
            self.blocks[k] = {n: st.get(f"model.layers.{k}.{n}", dtype).to(device) for n in names}
        inv_freq = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, self.hd, 2).float() / self.hd))
        self.inv_freq = inv_freq

    def embed(self, tokens):
        # Only the prompt's rows of the (large) embedding are read.
        info = self.st.header["model.embed_tokens.weight"]
        np_type, size = DTYPES[info["dtype"]]
        start, _ = info["data_offsets"]
        d = info["shape"][1]
        arr = np.frombuffer(self.st.mm, dtype=np_type, count=info["shape"][0] * d, offset=self.st.base + start)
        t = torch.from_numpy(arr.reshape(info["shape"]))
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        return t[tokens.long()].to(self.dtype).to(self.device)  # [T, d]

    def rope(self, T):
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
        emb = torch.cat([freqs, freqs], -1)  # [T, hd]
        return emb.cos().to(self.dtype).to(self.device), emb.sin().to(self.dtype).to(self.device)

    def rms(self, x, w):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * xf.to(x.dtype)

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], -1)

    def block(self, k, h, cos, sin):
        w = self.blocks[k]
        B, T, _ = h.shape
        x = self.rms(h, w["input_layernorm.weight"])
        lin = torch.nn.functional.linear
        q = lin(x, w["self_attn.q_proj.weight"], w["self_attn.q_proj.bias"]).view(B, T, self.heads, self.hd).transpose(1, 2)
        kk = lin(x, w["self_attn.k_proj.weight"], w["self_attn.k_proj.bias"]).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = lin(x, w["self_attn.v_proj.weight"], w["self_attn.v_proj.bias"]).view(B, T, self.kv, self.hd).transpose(1, 2)
        q = q * cos + self.rotate_half(q) * sin
        kk = kk * cos + self.rotate_half(kk) * sin
        if self.kv != self.heads:
            kk = kk.repeat_interleave(self.heads // self.kv, 1)
            v = v.repeat_interleave(self.heads // self.kv, 1)
        scores = (q @ kk.transpose(-1, -2)) / math.sqrt(self.hd)  # [B, H, T, T]
        mask = torch.ones(T, T, dtype=torch.bool, device=h.device).triu(1)
        probs = torch.softmax(scores.masked_fill(mask, float("-inf")).float(), -1).to(h.dtype)
        attn = (probs @ v).transpose(1, 2).reshape(B, T, self.d)
        h = h + lin(attn, w["self_attn.o_proj.weight"])
        y = self.rms(h, w["post_attention_layernorm.weight"])
        mlp = lin(torch.nn.functional.silu(lin(y, w["mlp.gate_proj.weight"])) * lin(y, w["mlp.up_proj.weight"]),
                  w["mlp.down_proj.weight"])
        return h + mlp

    def run(self, h, lo, hi, cos, sin):
        for k in range(lo, hi + 1):
            h = self.block(k, h, cos, sin)
        return h


def cmd_info(_a):
    cfg = torch.__config__.show()
    cap = next((l.split(":", 1)[1].strip() for l in cfg.splitlines() if "CPU capability usage" in l), "?")
    import re
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    blas = m.group(1) if m else "?"
    print(json.dumps({"torch": torch.__version__, "cpu_capability": cap, "blas_info": blas,
                      "mkldnn": torch.backends.mkldnn.is_available(), "threads": torch.get_num_threads(),
                      "torch_lib": os.path.dirname(torch.__file__)}))


def cmd_limits(a):
    dev = torch.device(a.device)
    out = []

    def run(M, K, N, dtype, reps):
        x = torch.randn(M, K, device=dev).to(dtype)
        w = torch.randn(N, K, device=dev).to(dtype)
        torch.nn.functional.linear(x, w)  # warm-up
        sync(dev)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, w)
            sync(dev)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out.append({"dtype": {torch.float32: "f32", torch.bfloat16: "bf16"}[dtype], "M": M, "K": K, "N": N,
                    "reps": reps, "median_s": med, "gflops": 2 * M * K * N / med / 1e9,
                    "best_gflops": 2 * M * K * N / min(times) / 1e9})
        print(json.dumps(out[-1]), file=sys.stderr)

    d, inter = a.hidden, a.intermediate
    f32_rows = [int(r) for r in a.f32_rows.split(",")]
    bf16_rows = [int(r) for r in a.bf16_rows.split(",")]
    for M in f32_rows:
        run(M, d, inter, torch.float32, a.reps)
    for M in bf16_rows:
        run(M, d, inter, torch.bfloat16, a.bf16_reps)
    print(json.dumps(out))


def read_inputs(path):
    st = Safetensors(path)
    return st.get("tokens", torch.int64), st.get("theta0", torch.float32)


def cmd_loop(a):
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    s, t = a.source, a.target
    lo = 0 if a.mode == "faithful" else s + 1
    t_load = time.perf_counter()
    # The cached variant needs blocks 0..s once, for resid(s); load them too, then drop them.
    model = Qwen2(a.model, 0, t, dtype, dev)
    load_s = time.perf_counter() - t_load
    tokens, theta0 = read_inputs(a.inputs)
    theta0 = theta0.to(dev)
    T = tokens.numel()
    cos, sin = model.rope(T)
    basis = (theta0 / theta0.norm()).reshape(1, -1)  # [1, d]: the first vector's basis is theta0 alone

    with torch.no_grad():
        x = model.run(model.embed(tokens)[None], 0, s, cos, sin)  # resid(s) [1, T, d]
        z0 = model.run(x + theta0.to(dtype), s + 1, t, cos, sin).float().mean(1)[0]  # [d]
    if a.x_out:
        x[0].float().cpu().numpy().astype(np.float32).tofile(a.x_out)
    if a.mode == "cached":
        for k in range(0, s + 1):
            del model.blocks[k]

    rows = a.block if a.mode == "batched" else 1
    # Rows start at theta0 plus a little noise (row 0 exactly at theta0), so that they differ.
    noise = torch.randn(rows, theta0.numel(), generator=torch.Generator().manual_seed(0)).to(dev) * 0.01 * theta0.norm() / math.sqrt(theta0.numel())
    noise[0] = 0
    theta = (theta0[None] + noise).requires_grad_(True)  # [rows, d]
    opt = torch.optim.Adam([theta], lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, losses = [], []
    for _ in range(a.steps):
        sync(dev)
        t0 = time.perf_counter()
        opt.zero_grad()
        if a.mode == "faithful":
            h = model.run(model.embed(tokens)[None], 0, s, cos, sin)  # blocks 0..s, every step
        else:
            h = x
        h = model.run(h + theta[:, None, :].to(dtype), s + 1, t, cos, sin)  # theta added to resid(s): [rows, T, d]
        loss = (h.float().mean(1) - z0).norm(dim=-1)  # [rows]
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            theta -= (theta @ basis.T) @ basis  # projection after the step (basis rows are unit)
        sync(dev)
        times.append(time.perf_counter() - t0)
        losses.append(loss.mean().item())
    print(json.dumps({"mode": a.mode, "device": a.device, "dtype": a.dtype, "threads": torch.get_num_threads(),
                      "steps": a.steps, "rows": rows, "load_s": load_s, "times": times, "losses": losses,
                      "seq": T, "peak_gpu_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["info", "limits", "loop"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    # limits
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=5504)
    ap.add_argument("--f32-rows", default="26,416,1024,2048")
    ap.add_argument("--bf16-rows", default="26,256")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--bf16-reps", type=int, default=3)
    # loop
    ap.add_argument("--model")
    ap.add_argument("--inputs")
    ap.add_argument("--mode", choices=["faithful", "cached", "batched"], default="faithful")
    ap.add_argument("--block", type=int, default=64, help="rows of the batched mode")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--source", type=int, default=8)
    ap.add_argument("--target", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--x-out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)  # Debian's torch defaults to one thread
    {"info": cmd_info, "limits": cmd_limits, "loop": cmd_loop}[a.command](a)


if __name__ == "__main__":
    main()

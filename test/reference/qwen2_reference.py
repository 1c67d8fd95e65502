#!/usr/bin/python3
"""Independent Qwen2 forward in plain torch, the reference melbo's parity tests compare against.

It follows the maths of Hugging Face's modeling_qwen2.py (no code shared with melbo): RMSNorm
in (at least) float32, NeoX RoPE with rotate_half, q/k/v with bias and o without, GQA by
repeating kv heads, causal softmax scaled by 1/sqrt(head_dim), MLP down(silu(gate(x)) * up(x)),
final norm, lm_head or tied embeddings. resid(k) is the output of block k (no final norm).

Run with Debian's /usr/bin/python3 (the one with python3-torch):
  qwen2_reference.py --model DIR --inputs IN.safetensors --out OUT.safetensors --task TASK
Tasks:
  hidden  in: tokens i32 [seq], optional theta f32 [d] (with --source s, added to resid(s) at
          every position, so resid.s includes theta); theta [B, d] runs the prompt B times,
          row b steered by theta_b, and every output gets a leading [B]
          out: resid.K f32 [seq, d] for K = 0..L-1, logits f32 [seq, vocab]
  slice   in: x f32 [seq, d] (= resid(s)), theta f32 [B, d], z0 f32 [d]; --source s --target t
          runs blocks s+1..t on x + theta_b, z_b = mean over positions of resid(t),
          out: loss f32 [B] = ||z_b - z0||_2, grad f32 [B, d] = d loss_b / d theta_b,
               resid_t f32 [B, seq, d]
--float64 computes everything in float64 (weights are upcast exactly); outputs stay float32.
"""
import argparse
import json
import math
import os
import struct

import numpy as np
import torch

# ---- safetensors by hand (no safetensors package on this machine) ---------------------------
NP_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.uint16,
             "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + start:8 + n + end], dtype=NP_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":  # bf16 is the top half of an f32: widening is exact
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return tensors


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        arr = np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy())
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format asks for an 8-byte aligned data section
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(model_dir, "model.safetensors"))
    with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    weights = {}
    for shard in shards:
        weights.update(read_safetensors(os.path.join(model_dir, shard)))
    return weights


# ---- the model -------------------------------------------------------------------------------
class Qwen2:
    def __init__(self, model_dir, dtype):
        with open(os.path.join(model_dir, "config.json")) as f:
            c = json.load(f)
        self.dtype = dtype
        self.d = c["hidden_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads", self.n_heads)
        self.hd = self.d // self.n_heads
        self.eps = c["rms_norm_eps"]
        self.rope_theta = c.get("rope_theta", 10000.0)
        self.w = {k: v.to(dtype) for k, v in load_weights(model_dir).items()}
        if c.get("tie_word_embeddings", False) or "lm_head.weight" not in self.w:
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]
        # HF computes inv_freq in float32; keep that definition even in float64 mode, so the
        # float64 run differs from the float32 one only by rounding, not by the model.
        hd = self.hd
        self.inv_freq = 1.0 / (self.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64)
                                                   .float() / hd))

    def rms_norm(self, x, weight):
        # Variance in at least float32, as HF does for bf16 models.
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        xf = x.to(acc)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * xf.to(x.dtype)

    def rope(self, seq):
        pos = torch.arange(seq, dtype=self.inv_freq.dtype)
        freqs = torch.outer(pos, self.inv_freq).to(self.dtype)  # [seq, hd/2]
        emb = torch.cat([freqs, freqs], dim=-1)  # [seq, hd]: NeoX layout, halves not interleaved
        return emb.cos(), emb.sin()

    @staticmethod
    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat([-x2, x1], dim=-1)

    def linear(self, x, name, bias=False):
        y = x @ self.w[name + ".weight"].T
        return y + self.w[name + ".bias"] if bias else y

    def attention(self, x, i, cos, sin):
        B, S, _ = x.shape
        p = f"model.layers.{i}.self_attn."
        # [B, S, heads*hd] -> [B, S, heads, hd] -> [B, heads, S, hd]
        q = self.linear(x, p + "q_proj", True).view(B, S, self.n_heads, self.hd).transpose(1, 2)
        k = self.linear(x, p + "k_proj", True).view(B, S, self.n_kv, self.hd).transpose(1, 2)
        v = self.linear(x, p + "v_proj", True).view(B, S, self.n_kv, self.hd).transpose(1, 2)
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        # GQA: query head h uses kv head h // (heads / kv_heads), as HF's repeat_kv does.
        rep = self.n_heads // self.n_kv
        k = k.repeat_interleave(rep, dim=1)  # [B, heads, S, hd]
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)  # [B, heads, S, S]
        causal = torch.ones(S, S, dtype=torch.bool).triu(1)  # True above the diagonal: future
        scores = scores.masked_fill(causal, float("-inf"))
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        probs = torch.softmax(scores.to(acc), dim=-1).to(x.dtype)
        out = (probs @ v).transpose(1, 2).reshape(B, S, self.n_heads * self.hd)  # [B, S, d]
        return self.linear(out, p + "o_proj")

    def block(self, x, i, cos, sin):
        p = f"model.layers.{i}."
        h = x + self.attention(self.rms_norm(x, self.w[p + "input_layernorm.weight"]), i, cos, sin)
        m = self.rms_norm(h, self.w[p + "post_attention_layernorm.weight"])
        m = self.linear(torch.nn.functional.silu(self.linear(m, p + "mlp.gate_proj"))
                        * self.linear(m, p + "mlp.up_proj"), p + "mlp.down_proj")
        return h + m

    def hidden(self, tokens, theta=None, source=None):
        """tokens [S] -> resid(k) [S, d] for every block, logits [S, vocab] ([B, ...] for theta [B, d])."""
        batched = theta is not None and theta.dim() == 2
        rows = theta.to(self.dtype).reshape(-1, 1, self.d) if theta is not None else None  # [B, 1, d]
        x = self.w["model.embed_tokens.weight"][tokens.long()][None]  # [1, S, d]
        x = x.expand(rows.shape[0] if rows is not None else 1, -1, -1)  # [B, S, d]
        cos, sin = self.rope(x.shape[1])
        out = {}
        for i in range(self.n_layers):
            x = self.block(x, i, cos, sin)
            if rows is not None and i == source:
                x = x + rows  # steering: every position of resid(source), one theta per row
            out[f"resid.{i}"] = x
        out["logits"] = self.linear(self.rms_norm(x, self.w["model.norm.weight"]), "lm_head")
        return out if batched else {k: v[0] for k, v in out.items()}

    def slice(self, x, theta, z0, source, target):
        """f_{s->t}(x + theta_b) for each row b; loss_b = ||mean_pos(resid(t)) - z0||_2."""
        theta = theta.to(self.dtype).requires_grad_(True)  # [B, d]
        h = x.to(self.dtype)[None] + theta[:, None, :]  # [B, S, d]
        cos, sin = self.rope(h.shape[1])
        for i in range(source + 1, target + 1):
            h = self.block(h, i, cos, sin)
        loss = (h.mean(dim=1) - z0.to(self.dtype)).norm(dim=-1)  # [B], plain L2 norm
        # Rows are independent, so the gradient of the sum is each row's own gradient.
        (grad,) = torch.autograd.grad(loss.sum(), theta)
        return {"loss": loss, "grad": grad, "resid_t": h}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--task", required=True, choices=["hidden", "slice"])
    ap.add_argument("--source", type=int)
    ap.add_argument("--target", type=int)
    ap.add_argument("--float64", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)  # torch defaults to 1 thread on this Debian build
    model = Qwen2(a.model, torch.float64 if a.float64 else torch.float32)
    inp = read_safetensors(a.inputs)
    with torch.no_grad() if a.task == "hidden" else torch.enable_grad():
        if a.task == "hidden":
            theta = inp.get("theta")
            if theta is not None and a.source is None:
                ap.error("theta given without --source")
            out = model.hidden(inp["tokens"], theta, a.source)
        else:
            if a.source is None or a.target is None or not a.source < a.target < model.n_layers:
                ap.error("slice needs --source s --target t with s < t < layers")
            out = model.slice(inp["x"], inp["theta"], inp["z0"], a.source, a.target)
    write_safetensors(a.out, out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Train melbo's demo chat model: a small Qwen2-architecture decoder, from build_data.py's examples.

Usage: train.py DATA_DIR OUT_DIR [--minutes M] [--threads N]

Writes OUT_DIR/{config.json, generation_config.json, model.safetensors (bf16), tokenizer.json,
tokenizer_config.json} (a checkpoint laid out like a Hugging Face Qwen2 one, so melbo loads it
by the same path) and OUT_DIR/training.csv (the loss curve). The loss is on the answer tokens
and the closing <|im_end|>, as in chat fine-tuning. Fixed seeds; bf16 autocast when the CPU
has AVX-512 BF16 (float32 otherwise, about 6x slower). Stops after --minutes of training.
"""
import argparse
import json
import math
import os
import random
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402

VOCAB = 2048
CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 8,
    "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "vocab_size": VOCAB, "attention_dropout": 0.0, "initializer_range": 0.02,
    "use_sliding_window": False, "sliding_window": 1024, "max_window_layers": 8,
    "torch_dtype": "bfloat16", "use_cache": True,
}
MAX_LEN = 320
BATCH_TOKENS = 4096
LR, MIN_LR_SHARE, WARMUP, WEIGHT_DECAY = 1.5e-3, 0.1, 100, 0.1
SEED = 1234


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f, self.heads = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
        self.hd = d // self.heads
        self.ln1 = torch.nn.Parameter(torch.ones(d))
        self.ln2 = torch.nn.Parameter(torch.ones(d))
        self.q = torch.nn.Linear(d, d)
        self.k = torch.nn.Linear(d, d)
        self.v = torch.nn.Linear(d, d)
        self.o = torch.nn.Linear(d, d, bias=False)
        self.gate = torch.nn.Linear(d, f, bias=False)
        self.up = torch.nn.Linear(d, f, bias=False)
        self.down = torch.nn.Linear(f, d, bias=False)
        self.eps = c["rms_norm_eps"]

    def norm(self, x, w):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * w

    def forward(self, x, cos, sin, mask):  # x: [B, T, d]
        B, T, d = x.shape
        h = self.norm(x, self.ln1)
        q, k, v = (p(h).view(B, T, self.heads, self.hd).transpose(1, 2) for p in (self.q, self.k, self.v))  # [B, H, T, hd]
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask  # [B, H, T, T]
        y = (att.float().softmax(-1).to(v.dtype) @ v).transpose(1, 2).reshape(B, T, d)
        x = x + self.o(y)
        h = self.norm(x, self.ln2)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rope(x, cos, sin):  # rotate-half RoPE, as Hugging Face's Qwen2
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
    return x * cos + rotated * sin


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.blocks = torch.nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.ln_f = torch.nn.Parameter(torch.ones(c["hidden_size"]))
        hd = c["hidden_size"] // c["num_attention_heads"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(MAX_LEN).float(), inv)
        ang = torch.cat((ang, ang), -1)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=c["initializer_range"] / (math.sqrt(2 * c["num_hidden_layers"]) if name.endswith(("o.weight", "down.weight")) else 1))
            elif name.endswith("bias"):
                torch.nn.init.zeros_(p)

    def forward(self, ids):  # ids: [B, T] -> logits [B, T, V]
        T = ids.shape[1]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T], mask)
        x = self.blocks[0].norm(x, self.ln_f)
        return x @ self.embed.weight.t()


def hf_tensors(model):
    """The parameters under Hugging Face Qwen2 names (lm_head tied to the embedding)."""
    out = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.ln_f}
    for i, b in enumerate(model.blocks):
        p = f"model.layers.{i}."
        out.update({p + "input_layernorm.weight": b.ln1, p + "post_attention_layernorm.weight": b.ln2,
                    p + "mlp.gate_proj.weight": b.gate.weight, p + "mlp.up_proj.weight": b.up.weight, p + "mlp.down_proj.weight": b.down.weight,
                    p + "self_attn.o_proj.weight": b.o.weight})
        for n in ("q", "k", "v"):
            out[p + f"self_attn.{n}_proj.weight"] = getattr(b, n).weight
            out[p + f"self_attn.{n}_proj.bias"] = getattr(b, n).bias
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.bfloat16).contiguous()
        data = t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def encode_split(tok, path, question_loss=False):
    """(ids, first position with a loss, kind) per example: the chat prompt, then answer + <|im_end|>\\n.
    The loss starts at the answer, or with question_loss at the user's question."""
    rows = []
    before_question = tok.encode(bpe.chat_prompt("").split("<|im_start|>user\n")[0] + "<|im_start|>user\n")
    for line in open(path):
        e = json.loads(line)
        prompt = tok.encode(bpe.chat_prompt(e["question"]))
        answer = tok.encode(e["answer"] + "<|im_end|>\n")
        start = len(prompt)
        if question_loss:
            assert prompt[: len(before_question)] == before_question, "the question must start on a token boundary"
            start = len(before_question)
        rows.append(((prompt + answer)[:MAX_LEN], start, e["kind"]))
    return rows


def batches(rows, rng):
    """Batches of similar length (about BATCH_TOKENS tokens each), in random order."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), rng.random()))
    out, cur = [], []
    for i in order:
        cur.append(i)
        if len(cur) * len(rows[i][0]) >= BATCH_TOKENS:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def tensors_of(rows, idx):
    T = max(len(rows[i][0]) for i in idx)
    ids = torch.zeros(len(idx), T, dtype=torch.long)
    target = torch.full((len(idx), T), -100, dtype=torch.long)
    for j, i in enumerate(idx):
        seq, start, _ = rows[i]
        ids[j, : len(seq)] = torch.tensor(seq)
        target[j, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    return ids, target


def loss_of(model, rows, idx, autocast):
    ids, target = tensors_of(rows, idx)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(ids)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100), int((target != -100).sum())


def heldout_loss(model, rows, autocast):
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for idx in batches(rows, random.Random(0)):
            loss, count = loss_of(model, rows, idx, autocast)
            total += float(loss) * count
            n += count
    model.train()
    return total / n


def has_bf16():
    try:
        return "avx512_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--question-loss", action="store_true", help="also train on the user's question tokens, not only the answer")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    autocast = has_bf16()

    train_rows_text = [json.loads(l) for l in open(os.path.join(args.data, "train.jsonl"))]
    merges = bpe.train([e["question"] for e in train_rows_text] + [e["answer"] for e in train_rows_text], VOCAB)
    tok = bpe.Tokenizer(merges)
    assert tok.size == VOCAB, tok.size
    bpe.save(tok, args.out)
    train_rows = encode_split(tok, os.path.join(args.data, "train.jsonl"), args.question_loss)
    held_rows = encode_split(tok, os.path.join(args.data, "heldout.jsonl"), args.question_loss)
    print(f"train: {len(train_rows)} examples, {sum(len(r[0]) for r in train_rows)} tokens; held out: {len(held_rows)}; bf16 autocast: {autocast}", flush=True)

    model = Model(CONFIG)
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": other, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.95))
    rng = random.Random(SEED)
    budget = args.minutes * 60
    # The schedule's length in steps is fixed up front from a measured step time, so the
    # cosine ends when the time budget does.
    steps_total, step, tokens, start = None, 0, 0, time.time()
    log = open(os.path.join(args.out, "training.csv"), "w")
    log.write("step,epoch,tokens,seconds,train_loss,heldout_loss\n")
    epoch, running = 0, []
    while steps_total is None or step < steps_total:
        for idx in batches(train_rows, rng):
            if steps_total is not None and step >= steps_total:
                break
            total = steps_total or 10 ** 9
            lr = LR * min(1.0, (step + 1) / WARMUP) * (MIN_LR_SHARE + (1 - MIN_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total))))
            for g in opt.param_groups:
                g["lr"] = lr
            loss, count = loss_of(model, train_rows, idx, autocast)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tokens += sum(len(train_rows[i][0]) for i in idx)
            running.append(float(loss))
            elapsed = time.time() - start
            if step == 30 and steps_total is None:
                steps_total = int(budget / (elapsed / step))
                print(f"{elapsed / step:.2f} s/step, {tokens / elapsed:.0f} tokens/s: {steps_total} steps in {args.minutes} min", flush=True)
            if step % 25 == 0 or step == steps_total:
                held = heldout_loss(model, held_rows, autocast) if step % 200 == 0 or step == steps_total else None
                tl = sum(running) / len(running)
                running = []
                log.write(f"{step},{epoch},{tokens},{elapsed:.1f},{tl:.4f},{'' if held is None else f'{held:.4f}'}\n")
                log.flush()
                print(f"step {step}/{steps_total} epoch {epoch} loss {tl:.3f}" + ("" if held is None else f" held-out {held:.3f}") + f" lr {lr:.2e} {elapsed / 60:.1f} min", flush=True)
        epoch += 1
    config = dict(CONFIG, bos_token_id=tok.special["<|endoftext|>"], eos_token_id=tok.special["<|im_end|>"])
    json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
    json.dump({"bos_token_id": tok.special["<|endoftext|>"], "eos_token_id": [tok.special["<|im_end|>"], tok.special["<|endoftext|>"]],
               "pad_token_id": tok.special["<|endoftext|>"], "do_sample": False}, open(os.path.join(args.out, "generation_config.json"), "w"), indent=2)
    write_safetensors(os.path.join(args.out, "model.safetensors"), hf_tensors(model))
    print(f"done: {step} steps, {epoch} epochs, {tokens} tokens in {(time.time() - start) / 60:.1f} min -> {args.out}", flush=True)


if __name__ == "__main__":
    main()

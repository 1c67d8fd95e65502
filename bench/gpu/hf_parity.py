#!/usr/bin/env python3
"""Hidden states of a checkpoint from Hugging Face transformers' own Qwen2 classes, for
bench/gpu/hf-parity.ts: raw float32 [L - 1, T, d], row k = the output of block k (k < L - 1:
transformers applies the final norm to its last hidden state).

  python3 hf_parity.py --model DIR --tokens 1,2,3 --out FILE [--device cuda]
"""
import argparse

import numpy as np
import torch
import transformers
from transformers import Qwen2ForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--tokens", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--device", default="cpu")
a = ap.parse_args()
# transformers 5 names the argument `dtype`, 4.x `torch_dtype`.
dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
model = Qwen2ForCausalLM.from_pretrained(a.model, **{dtype_arg: torch.float32}).to(a.device).eval()
tokens = torch.tensor([[int(t) for t in a.tokens.split(",")]], device=a.device)
with torch.no_grad():
    hidden = model(tokens, output_hidden_states=True).hidden_states  # L + 1 of [1, T, d]
np.stack([h[0].float().cpu().numpy() for h in hidden[1:-1]]).astype(np.float32).tofile(a.out)

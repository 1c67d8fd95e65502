// PyTorch .pt files (torch.save's zip format) in and out, for `melbo import` / `melbo export`.
//
//   loadPt(buffer: Uint8Array) -> Array<{ shape: number[], dtype: string, data: Float32Array }>
//     The file holds a tensor, or a list or tuple of tensors; each comes back as float32
//     (float64, float16 and bfloat16 are converted). Anything else is an Error saying what the
//     file holds. The caller (src/io/formats/pt.ts) checks the shapes.
//   savePt({ data: Float32Array, n, d }) -> Buffer
//     The bytes of torch.save of an [n, d] float32 tensor (torch::pickle_save).
//
// Both are synchronous: vector files are kilobytes to a few megabytes, read or written in
// milliseconds, so a libuv job (and a Promise) would cost more than it saves. The caller holds
// the bytes; the native side never opens a file.
#pragma once
#include <napi.h>

namespace melbo {

Napi::Value LoadPt(const Napi::CallbackInfo& info);
Napi::Value SavePt(const Napi::CallbackInfo& info);

}  // namespace melbo

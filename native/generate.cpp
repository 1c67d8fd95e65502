#include "generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <stdexcept>

namespace melbo {

torch::Tensor sampleNext(const torch::Tensor& logits, double temperature, double topP, std::vector<at::Generator>& gens) {
  if (temperature <= 0) return logits.argmax(-1);  // [B]
  auto probs = torch::softmax(logits.to(torch::kFloat) / temperature, -1);  // [B, V]
  if (topP < 1) {
    auto sorted = probs.sort(-1, /*descending=*/true);
    auto sortedProbs = std::get<0>(sorted), order = std::get<1>(sorted);  // [B, V]
    // Keep a token while the mass before it is still below topP (the first one always stays).
    auto before = sortedProbs.cumsum(-1) - sortedProbs;
    sortedProbs = sortedProbs.masked_fill(before >= topP, 0);
    probs = torch::zeros_like(probs).scatter(-1, order, sortedProbs);
  }
  // One draw per row: with or without replacement is the same distribution, but without
  // replacement libtorch draws an exponential variate for every logit (~18x slower at a
  // 151936-token vocabulary and 64 rows); with replacement it is a cumulative sum and a search.
  if (gens.size() == 1) return torch::multinomial(probs, 1, /*replacement=*/true, gens[0]).squeeze(-1);  // [B]
  if (static_cast<int64_t>(gens.size()) != probs.size(0)) throw std::runtime_error("sampleNext: one generator per row needed");
  auto next = torch::empty({probs.size(0)}, torch::kLong);  // [B]
  for (int64_t b = 0; b < probs.size(0); ++b) {
    next[b] = torch::multinomial(probs[b], 1, /*replacement=*/true, gens[static_cast<size_t>(b)]).item<int64_t>();
  }
  return next;
}

GenerateResult generate(const Qwen2& model, const GenerateRequest& r) {
  torch::NoGradGuard noGrad;
  const auto& cfg = model.cfg;
  model.requireBlocks(0, cfg.layers - 1, "generation");
  if (!model.embed.defined() || !model.hasHead()) throw std::runtime_error("generation needs the embedding and lm_head");
  const int64_t T = r.prompt.size(0);
  if (T == 0) throw std::runtime_error("generation needs a non-empty prompt");
  const bool steered = r.vectors.defined();
  if (steered && (r.at < 0 || r.at >= cfg.layers)) throw std::runtime_error("steering block out of range");
  const int64_t B = steered ? r.vectors.size(0) : 1;
  torch::Tensor theta;  // [B, 1, d] in the compute dtype
  if (steered) theta = model.onDevice(r.vectors).to(model.act).unsqueeze(1);

  if (!r.rowSeeds.empty() && static_cast<int64_t>(r.rowSeeds.size()) != B) throw std::runtime_error("generation: rowSeeds must have one seed per row");
  std::vector<at::Generator> gens;
  if (r.rowSeeds.empty()) gens.push_back(at::detail::createCPUGenerator(r.seed));
  for (auto s : r.rowSeeds) gens.push_back(at::detail::createCPUGenerator(static_cast<uint64_t>(s)));
  KvCache cache;
  cache.keys.resize(model.blocks.size());
  cache.values.resize(model.blocks.size());

  auto out = torch::full({B, r.maxNewTokens}, -1, torch::kInt);
  auto lengths = torch::zeros({B}, torch::kInt);
  std::vector<bool> done(static_cast<size_t>(B), false);
  int64_t running = B;
  torch::Tensor firstLogits;  // [B, V]

  auto step = torch::Tensor(r.prompt).unsqueeze(0).expand({B, T});  // [B, T] tokens of this step
  // With firstLogits the prompt's pass runs even for maxNewTokens == 0 (the logits alone).
  const int64_t passes = std::max<int64_t>(r.maxNewTokens, r.firstLogits ? 1 : 0);
  for (int64_t i = 0; i < passes && running > 0; ++i) {
    const int64_t n = step.size(1);
    auto rope = model.rope(cache.length, n);
    auto h = model.embedTokens(step);  // [B, n, d]
    for (int64_t k = 0; k < cfg.layers; ++k) {
      h = model.block(k, h, rope, &cache);
      if (steered && k == r.at) h = h + theta;
    }
    cache.length += n;
    auto last = model.logits(h.narrow(1, n - 1, 1)).squeeze(1);  // [B, V] on the model's device
    if (i == 0 && r.firstLogits) firstLogits = toHost(last.to(torch::kFloat)).contiguous();
    if (i >= r.maxNewTokens) break;
    // Tokens are drawn on the CPU with a CPU generator, so a seed draws the same tokens on every
    // device; greedy decoding only moves the argmax.
    auto next = r.temperature <= 0 ? toHost(last.argmax(-1)) : sampleNext(toHost(last), r.temperature, r.topP, gens);  // [B]
    auto nextAcc = next.accessor<int64_t, 1>();
    auto outAcc = out.accessor<int32_t, 2>();
    auto lenAcc = lengths.accessor<int32_t, 1>();
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      outAcc[b][i] = static_cast<int32_t>(nextAcc[b]);
      lenAcc[b] = static_cast<int32_t>(i + 1);
      for (auto s : r.stopTokens) {
        if (s == nextAcc[b]) {
          done[b] = true;
          --running;
          break;
        }
      }
    }
    step = next.unsqueeze(1);  // [B, 1]
  }
  return GenerateResult{out, lengths, firstLogits};
}

}  // namespace melbo

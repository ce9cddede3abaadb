// plain_decode / score_response: prefill all prompts in one forward (outputs only at each prompt's
// last token), then one forward per step with each live sequence's newest token.
#include "policy/plain_decode.h"

#include <algorithm>
#include <stdexcept>

namespace longtail::policy {

std::vector<DecodeResult> plain_decode(Backend& backend, const std::vector<DecodeRequest>& requests,
                                       const DecodeOptions& options) {
  const ModelConfig& cfg = backend.config();
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& p = requests[r].prompt;
    if (p.empty()) throw std::invalid_argument("request " + std::to_string(r) + ": empty prompt");
    if (static_cast<int64_t>(p.size()) >= cfg.max_position_embeddings) {
      throw std::invalid_argument("request " + std::to_string(r) + ": prompt of " + std::to_string(p.size()) +
                                  " tokens leaves no room below max_position_embeddings " +
                                  std::to_string(cfg.max_position_embeddings));
    }
  }
  if (options.max_new_tokens < 0) throw std::invalid_argument("max_new_tokens must be >= 0");
  std::vector<DecodeResult> results(requests.size());
  if (options.max_new_tokens == 0) {
    for (auto& r : results) r.finish_reason = "length";
    return results;
  }
  std::vector<int64_t> seqs;
  for (size_t r = 0; r < requests.size(); ++r) seqs.push_back(backend.create_sequence());
  auto release_all = [&] {
    for (int64_t s : seqs) backend.release_sequence(s);
  };
  try {
    std::vector<SequenceChunk> chunks;
    std::vector<size_t> live;  // request index of each chunk
    std::vector<int32_t> last(requests.size());
    for (size_t r = 0; r < requests.size(); ++r) {
      SequenceChunk ch;
      ch.seq = seqs[r];
      ch.uid = requests[r].uid;
      ch.tokens = requests[r].prompt;
      ch.sampling = options.sampling;
      ch.first_output = static_cast<int32_t>(requests[r].prompt.size()) - 1;
      chunks.push_back(ch);
      live.push_back(r);
    }
    while (!chunks.empty()) {
      const std::vector<TokenOutput> out = backend.forward(chunks);
      std::vector<SequenceChunk> next;
      std::vector<size_t> next_live;
      for (size_t i = 0; i < chunks.size(); ++i) {
        const size_t r = live[i];
        DecodeResult& res = results[r];
        res.tokens.push_back(out[i].sampled);
        res.logprobs.push_back(out[i].sampled_logprob);
        const bool stop = std::find(options.stop_tokens.begin(), options.stop_tokens.end(), out[i].sampled) !=
                          options.stop_tokens.end();
        const int64_t length = static_cast<int64_t>(requests[r].prompt.size() + res.tokens.size());
        if (stop) {
          res.finish_reason = "stop";
        } else if (static_cast<int32_t>(res.tokens.size()) >= options.max_new_tokens ||
                   length >= cfg.max_position_embeddings) {
          res.finish_reason = "length";
        } else {
          last[r] = out[i].sampled;
          SequenceChunk ch = chunks[i];
          ch.tokens = std::span<const int32_t>(&last[r], 1);
          ch.first_output = 0;
          next.push_back(ch);
          next_live.push_back(r);
        }
      }
      chunks = std::move(next);
      live = std::move(next_live);
    }
  } catch (...) {
    release_all();
    throw;
  }
  release_all();
  return results;
}

std::vector<float> score_response(Backend& backend, const std::vector<int32_t>& prompt,
                                  const std::vector<int32_t>& response, float temperature) {
  if (prompt.empty()) throw std::invalid_argument("score: empty prompt");
  if (response.empty()) return {};
  std::vector<int32_t> all(prompt);
  all.insert(all.end(), response.begin(), response.end());
  const int64_t seq = backend.create_sequence();
  SequenceChunk ch;
  ch.seq = seq;
  ch.tokens = all;
  ch.sampling.temperature = temperature;
  ch.first_output = static_cast<int32_t>(prompt.size()) - 1;
  std::vector<TokenOutput> out;
  try {
    out = backend.forward(std::span<const SequenceChunk>(&ch, 1));
  } catch (...) {
    backend.release_sequence(seq);
    throw;
  }
  backend.release_sequence(seq);
  std::vector<float> lp;
  for (size_t j = 0; j < response.size(); ++j) lp.push_back(out[j].next_input_logprob);
  return lp;
}

}  // namespace longtail::policy

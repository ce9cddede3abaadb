// libFuzzer target for the protocol decoder (scripts/fuzz.sh builds it with clang and runs it over
// fuzz/corpus/). Any input must either decode or raise ProtocolError; anything else -- a crash, a
// sanitizer report, another exception type -- is a bug. Decoded messages are re-encoded and decoded
// again, which must succeed: the encoder and decoder agree on everything the decoder accepts.
#include <cstdio>
#include <cstdlib>

#include "trainer_bridge/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longtail::bridge;
  const auto in = fuzz::split(data, size);
  Message m;
  try {
    m = decode(in.frames, in.dir);
  } catch (const ProtocolError&) {
    return 0;
  }
  try {
    (void)decode(encode(m), in.dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "re-encoded message does not decode: %s\n", e.what());
    std::abort();
  }
  return 0;
}

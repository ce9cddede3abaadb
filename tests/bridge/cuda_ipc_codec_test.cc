// UPDATE_WEIGHTS's cuda_ipc source on the wire: handles survive as opaque bytes, every manifest
// field arrives, and a message naming no source or two sources is refused before the worker sees it.
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include "trainer_bridge/codec.h"

namespace longtail::bridge {
namespace {

UpdateWeights from_cuda_ipc() {
  UpdateWeights u;
  u.req = 3;
  u.version = 9;
  u.check_finite = true;
  std::string handle(policy::kCudaIpcHandleBytes, '\0');
  for (size_t i = 0; i < handle.size(); ++i) handle[i] = static_cast<char>(i * 7);  // NULs and high bytes
  u.cuda_ipc.buffers = {{handle, 4096}, {std::string(policy::kCudaIpcHandleBytes, '\xff'), 512}};
  u.cuda_ipc.tensors = {{"model.norm.weight", "F32", {64}, 1, 0, 256},
                        {"model.embed_tokens.weight", "BF16", {16, 64}, 0, 2048, 4096}};
  return u;
}

ProtocolError refusal(const UpdateWeights& u) {
  // Encoding does not check the protocol's rules (a trainer-side concern); decoding does.
  try {
    decode(encode(Message{u}), Direction::kToWorker);
  } catch (const ProtocolError& e) {
    return e;
  }
  ADD_FAILURE() << "decode accepted bad input";
  return ProtocolError("none", "none");
}

TEST(CudaIpcCodec, TheManifestAndHandlesRoundTrip) {
  const UpdateWeights sent = from_cuda_ipc();
  const auto got = std::get<UpdateWeights>(decode(encode(Message{sent}), Direction::kToWorker));
  EXPECT_EQ(got.req, 3u);
  EXPECT_EQ(got.version, 9);
  EXPECT_TRUE(got.check_finite);
  EXPECT_TRUE(got.path.empty());
  EXPECT_TRUE(got.shm.empty());
  ASSERT_EQ(got.cuda_ipc.buffers.size(), 2u);
  EXPECT_EQ(got.cuda_ipc.buffers[0].handle, sent.cuda_ipc.buffers[0].handle);
  EXPECT_EQ(got.cuda_ipc.buffers[1].handle, sent.cuda_ipc.buffers[1].handle);
  EXPECT_EQ(got.cuda_ipc.buffers[0].size, 4096u);
  ASSERT_EQ(got.cuda_ipc.tensors.size(), 2u);
  const auto& t = got.cuda_ipc.tensors[1];
  EXPECT_EQ(t.name, "model.embed_tokens.weight");
  EXPECT_EQ(t.dtype, "BF16");
  EXPECT_EQ(t.shape, (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(t.buffer, 0u);
  EXPECT_EQ(t.begin, 2048u);
  EXPECT_EQ(t.end, 4096u);
}

TEST(CudaIpcCodec, ExactlyOneSourceIsAccepted) {
  UpdateWeights both = from_cuda_ipc();
  both.path = "/ckpt/v9";
  ProtocolError e = refusal(both);
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_NE(std::string(e.what()).find("'cuda_ipc'"), std::string::npos) << e.what();
  UpdateWeights with_shm = from_cuda_ipc();
  with_shm.shm = policy::SharedTensorSource{"longtail-x", 64, {{"w", "BF16", {2, 3}, 0, 12}}};
  EXPECT_EQ(refusal(with_shm).code, errc::kBadField);
  UpdateWeights none = from_cuda_ipc();
  none.cuda_ipc = {};
  EXPECT_EQ(refusal(none).code, errc::kBadField);
}

TEST(CudaIpcCodec, MistypedManifestFieldsAreNamed) {
  // A handle sent as an integer, a buffer index as a string: BAD_FIELD naming the field path.
  const auto header = [](bool bad_handle) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> p(buf);
    p.pack_map(4);
    p.pack("type"), p.pack("UPDATE_WEIGHTS");
    p.pack("req"), p.pack(1);
    p.pack("version"), p.pack(2);
    p.pack("cuda_ipc");
    p.pack_map(2);
    p.pack("buffers");
    p.pack_array(1);
    p.pack_map(2);
    p.pack("handle");
    if (bad_handle) p.pack(5); else p.pack_bin(64), p.pack_bin_body(std::string(64, 'h').data(), 64);
    p.pack("size"), p.pack(128);
    p.pack("tensors");
    p.pack_array(1);
    p.pack_map(6);
    p.pack("name"), p.pack("w");
    p.pack("dtype"), p.pack("F32");
    p.pack("shape"), p.pack(std::vector<int64_t>{2});
    p.pack("buffer");
    if (bad_handle) p.pack(0); else p.pack("zero");
    p.pack("begin"), p.pack(0);
    p.pack("end"), p.pack(8);
    Frames fr;
    fr.parts.emplace_back(reinterpret_cast<const uint8_t*>(buf.data()),
                          reinterpret_cast<const uint8_t*>(buf.data()) + buf.size());
    return fr;
  };
  for (bool bad_handle : {true, false}) {
    try {
      decode(header(bad_handle), Direction::kToWorker);
      ADD_FAILURE() << "accepted";
    } catch (const ProtocolError& e) {
      EXPECT_EQ(e.code, errc::kBadField);
      const std::string path = bad_handle ? "cuda_ipc.buffers[0].handle" : "cuda_ipc.tensors[0].buffer";
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace longtail::bridge

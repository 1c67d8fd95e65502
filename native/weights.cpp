#include "weights.h"

#include "shape_text.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <memory>
#include <stdexcept>
#include <utility>

namespace melbo {
namespace {

// A read-only mapping of a whole file, unmapped when the last tensor over it goes away.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw std::runtime_error(path + ": cannot stat (" + std::strerror(errno) + ")");
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      addr_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (addr_ == MAP_FAILED) {
        ::close(fd);
        throw std::runtime_error(path + ": cannot map (" + std::strerror(errno) + ")");
      }
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (addr_ && addr_ != MAP_FAILED) ::munmap(addr_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return static_cast<const uint8_t*>(addr_); }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* addr_ = nullptr;
  uint64_t size_ = 0;
};

// Drops the whole pages inside [p, p + n) from this process's resident set. They are clean
// pages of a read-only file mapping: touched again, they are read back from the page cache. A
// mapping spans the whole file, so without this every page a job ever read (blocks converted at
// load, blocks released after resid(source)) would count in its memory until the model goes.
void dropPages(const void* p, uint64_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

torch::ScalarType fileDtype(const TensorSource& s) {
  if (s.dtype == "F32") return torch::kFloat;
  if (s.dtype == "F16") return torch::kHalf;
  if (s.dtype == "BF16") return torch::kBFloat16;
  throw std::runtime_error(s.path + ": tensor " + s.name + " has unsupported dtype " + s.dtype);
}

class TensorLoader {
 public:
  explicit TensorLoader(const LoadRequest& request) : dtype_(request.dtype), device_(request.device) {
    for (const auto& t : request.tensors) {
      if (!sources_.emplace(Slot{t.block, t.role}, &t).second) {
        throw std::runtime_error("tensor " + t.name + ": role " + t.role + " of block " + std::to_string(t.block) + " was sent twice");
      }
    }
  }

  // The dtype a tensor has in its file.
  torch::ScalarType fileType(int64_t block, const std::string& role) const { return fileDtype(source(block, role)); }

  // The tensor in `role` of `block` (-1: outside the blocks), checked to have `shape`. `as`: the
  // dtype to build it in (default: the load dtype), on the model's device. On a GPU the CPU
  // tensor (mapped or converted) goes once copied, and its mapped pages with it.
  torch::Tensor get(int64_t block, const std::string& role, const std::vector<int64_t>& shape,
                    std::optional<torch::ScalarType> as = std::nullopt) {
    auto t = onCpu(source(block, role), shape, as);
    return device_.is_cpu() ? t : t.to(device_);
  }

 private:
  using Slot = std::pair<int64_t, std::string>;  // (block, role)

  torch::Tensor onCpu(const TensorSource& s, const std::vector<int64_t>& shape, std::optional<torch::ScalarType> as) {
    const torch::ScalarType want = as.value_or(dtype_);
    const std::string& name = s.name;
    if (s.shape != shape) {
      throw std::runtime_error(s.path + ": tensor " + name + " has shape " + shapeText(s.shape) +
                               ", the config implies " + shapeText(shape));
    }
    auto type = fileDtype(s);
    int64_t numel = 1;
    for (auto n : shape) numel *= n;
    auto file = map(s.path);
    if (s.nbytes != static_cast<uint64_t>(numel) * c10::elementSize(type) || s.offset > file->size() ||
        s.nbytes > file->size() - s.offset) {
      throw std::runtime_error(s.path + ": tensor " + name + " lies outside the file or has the wrong byte size");
    }
    void* ptr = const_cast<uint8_t*>(file->data() + s.offset);
    bool aligned = reinterpret_cast<uintptr_t>(ptr) % c10::elementSize(type) == 0;
    if (type == want && aligned) {
      // Zero-copy: the tensor keeps the mapping alive. Weights are never written. Once the
      // tensor goes (release, dispose), its pages leave the resident set.
      const uint64_t nbytes = s.nbytes;
      return torch::from_blob(ptr, shape, [file, ptr, nbytes](void*) { dropPages(ptr, nbytes); }, torch::TensorOptions().dtype(type));
    }
    torch::Tensor staged;
    if (aligned) {
      staged = torch::from_blob(ptr, shape, torch::TensorOptions().dtype(type));
    } else {  // copy byte-wise first: a misaligned view of floats is undefined behaviour
      staged = torch::empty(shape, torch::TensorOptions().dtype(type));
      std::memcpy(staged.data_ptr(), ptr, s.nbytes);
    }
    auto converted = staged.to(want, /*non_blocking=*/false, /*copy=*/true);
    dropPages(ptr, s.nbytes);  // the file's copy is not needed any more
    return converted;
  }

  const TensorSource& source(int64_t block, const std::string& role) const {
    auto it = sources_.find(Slot{block, role});
    if (it == sources_.end()) {
      throw std::runtime_error("no tensor was sent for " + role + (block >= 0 ? " of block " + std::to_string(block) : ""));
    }
    return *it->second;
  }

  std::shared_ptr<MappedFile> map(const std::string& path) {
    auto it = files_.find(path);
    if (it != files_.end()) return it->second;
    auto file = std::make_shared<MappedFile>(path);
    files_.emplace(path, file);
    return file;
  }

  torch::ScalarType dtype_;
  torch::Device device_;
  std::map<Slot, const TensorSource*> sources_;
  std::map<std::string, std::shared_ptr<MappedFile>> files_;
};

}  // namespace

Qwen2 loadQwen2(const LoadRequest& request) {
  const Qwen2Config& c = request.cfg;
  if (c.hidden <= 0 || c.heads <= 0 || c.kvHeads <= 0 || c.layers <= 0 || c.vocab <= 0 || c.intermediate <= 0 ||
      c.hidden % c.heads != 0 || c.heads % c.kvHeads != 0 || c.headDim * c.heads != c.hidden) {
    throw std::runtime_error("invalid Qwen2 configuration");
  }
  if (request.firstBlock < 0 || request.lastBlock >= c.layers || request.firstBlock > request.lastBlock + 1) {
    throw std::runtime_error("block range " + std::to_string(request.firstBlock) + ".." +
                             std::to_string(request.lastBlock) + " is outside 0.." + std::to_string(c.layers - 1));
  }
  TensorLoader loader(request);
  Qwen2 model;
  model.cfg = c;
  model.dtype = request.dtype;
  model.firstBlock = request.firstBlock;
  model.lastBlock = request.lastBlock;
  model.device = request.device;
  model.act = chooseActivationDtype(request.dtype, request.device);
  // Norm weights and biases are tiny: with float32 activations they are held in float32.
  const torch::ScalarType small = model.act;
  const int64_t d = c.hidden, qd = c.heads * c.headDim, kd = c.kvHeads * c.headDim, I = c.intermediate;
  for (int64_t layer = request.firstBlock; layer <= request.lastBlock; ++layer) {
    auto get = [&](const char* role, const std::vector<int64_t>& shape, std::optional<torch::ScalarType> as = std::nullopt) {
      return loader.get(layer, role, shape, as);
    };
    BlockWeights w;
    w.inputLayernorm = get("inputLayernorm", {d}, small);
    w.qProj = get("qProj", {qd, d});
    w.qProjBias = get("qProjBias", {qd}, small);
    w.kProj = get("kProj", {kd, d});
    w.kProjBias = get("kProjBias", {kd}, small);
    w.vProj = get("vProj", {kd, d});
    w.vProjBias = get("vProjBias", {kd}, small);
    w.oProj = get("oProj", {d, qd});
    w.postAttentionLayernorm = get("postAttentionLayernorm", {d}, small);
    w.gateProj = get("gateProj", {I, d});
    w.upProj = get("upProj", {I, d});
    w.downProj = get("downProj", {d, I});
    model.blocks.push_back(std::move(w));
  }
  constexpr int64_t kOutside = -1;  // the block index of the tensors outside the blocks
  if (request.embedding || (request.head && c.tied)) {
    // Only the prompt's rows of the embedding are read: unless it doubles as the lm_head, it stays
    // in the file's dtype (zero-copy, mapped pages only for the rows used) and embedTokens widens
    // the rows it looks up (exactly: bf16/f16 -> f32 is exact). Converting it would cost
    // vocab × d × 4 bytes (1.2 GB for Qwen1.5-1.8B) for nothing.
    const bool tiedHead = request.head && c.tied;
    model.embed = tiedHead ? loader.get(kOutside, "embedTokens", {c.vocab, d})
                           : loader.get(kOutside, "embedTokens", {c.vocab, d}, loader.fileType(kOutside, "embedTokens"));
  }
  if (request.head) {
    model.finalNorm = loader.get(kOutside, "norm", {d}, small);
    model.lmHead = c.tied ? model.embed : loader.get(kOutside, "lmHead", {c.vocab, d});
  }
  if (!request.embedding) model.embed = torch::Tensor();
  return model;
}

}  // namespace melbo

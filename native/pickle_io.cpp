// PyTorch .pt files (torch.save's zip format) in and out; see pickle_io.h.
//
// Reading: libtorch reconstructs the file's value (torch::pickle_load's own reader, no Python,
// nothing in the file is executed: its unpickler only rebuilds tensors and containers). That
// reader trusts the file more than an importer of user files may, so three checks run first:
//  1. the zip container (checkZip): a central directory inside the file, every record stored
//     uncompressed (torch.save never compresses) with its data inside the file, so no record can
//     make libtorch allocate more than the file's size (no zip bomb), and what
//     PyTorchStreamReader's constructor checks (it leaks when it throws there);
//  2. the pickle (PickleCheck): a symbolic run of data.pkl over the opcodes torch.save writes
//     (protocol 2), with a short list of allowed globals. libtorch 1.13's unpickler pops from
//     empty stacks and mark lists without checking (undefined behaviour on a crafted file), does
//     not compare a storage's element count with the size of its record, and sets a tensor's
//     sizes and strides without checking they stay inside the storage: all three are checked
//     here. It also says what the file holds (a dict, a string, an int tensor …) in words;
//  3. after loading, every tensor's extent is checked again against its storage.
// Files saved from GPU tensors load onto the CPU: torch::pickle_load(data) is
// readArchiveAndTensors("data", "", "", nullopt, nullopt, /*device=*/nullopt, reader) over the
// bytes; it is called here the same way with device = CPU (Python's map_location="cpu").
#include "pickle_io.h"

#include <torch/torch.h>
#include <torch/serialize.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <caffe2/serialize/versions.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "js_convert.h"

namespace melbo {
namespace {

using Error = std::runtime_error;

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const uint8_t* p) { return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24); }
uint64_t u64(const uint8_t* p) { return static_cast<uint64_t>(u32(p)) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

// caffe2's MemoryReadAdapter copies pos + n bytes without checking them against the size.
class BytesAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  BytesAdapter(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= size_) return 0;
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, size_ - pos));
    std::memcpy(buf, data_ + pos, k);
    return k;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

// ---------------------------------------------------------------- 1. the zip container

// The checks of miniz (libtorch's zip reader) and of PyTorchStreamReader's constructor, made
// first: the constructor leaks miniz's directory when it throws after miniz has opened the
// archive (a missing or unreadable version record, a first record outside a folder), and
// nothing here may make libtorch allocate more than the file's size.
void checkZip(const uint8_t* b, size_t n) {
  const std::string truncated = "the zip archive has no end record: the file is truncated, or not a zip file";
  if (n < 22) throw Error(truncated + " (" + std::to_string(n) + " bytes)");
  // End of central directory: the last "PK\5\6" in the final 22 + 65535 (comment) bytes.
  const size_t lowest = n > 22 + 65535 ? n - 22 - 65535 : 0;
  size_t eocd = SIZE_MAX;
  for (size_t p = n - 22 + 1; p-- > lowest;) {
    if (u32(b + p) == 0x06054b50u) {
      eocd = p;
      break;
    }
  }
  if (eocd == SIZE_MAX) throw Error(truncated);
  const std::string severalDisks = "the zip archive's end record names several disks: the file is damaged, or part of a split archive";
  if (u16(b + eocd + 4) != 0 || u16(b + eocd + 6) != 0 || u16(b + eocd + 8) != u16(b + eocd + 10)) throw Error(severalDisks);
  uint64_t entries = u16(b + eocd + 10), dirSize = u32(b + eocd + 12), dirOffset = u32(b + eocd + 16);
  if (eocd >= 20 && u32(b + eocd - 20) == 0x07064b50u) {
    // A zip64 locator just before the end record (libtorch writes one): miniz takes the zip64
    // end record's values, which must then agree with the classic ones where those are not 0xFF…FF.
    const uint8_t* loc = b + eocd - 20;
    const uint64_t rec = u64(loc + 8);
    if (u32(loc + 4) != 0 || u32(loc + 16) > 1) throw Error(severalDisks);
    if (rec > eocd - 20 || eocd - 20 - rec < 56 || u32(b + rec) != 0x06064b50u) throw Error("the zip64 end record is missing or damaged: the file is damaged");
    if (u32(b + rec + 16) != 0 || u32(b + rec + 20) != 0 || u64(b + rec + 24) != u64(b + rec + 32)) throw Error(severalDisks);
    const uint64_t entries64 = u64(b + rec + 32), size64 = u64(b + rec + 40), offset64 = u64(b + rec + 48);
    if ((entries != 0xFFFF && entries != entries64) || (dirSize != 0xFFFFFFFFu && dirSize != size64) || (dirOffset != 0xFFFFFFFFu && dirOffset != offset64)) {
      throw Error("the zip archive's two end records disagree: the file is damaged");
    }
    entries = entries64;
    dirSize = size64;
    dirOffset = offset64;
  } else if (entries == 0xFFFF || dirSize == 0xFFFFFFFFu || dirOffset == 0xFFFFFFFFu) {
    throw Error("the zip64 end record is missing: the file is damaged");
  }
  if (dirOffset > n || dirSize > n - dirOffset) throw Error("the zip directory lies outside the file: the file is truncated or damaged");
  if (entries == 0) throw Error("the zip archive is empty: not a file torch.save wrote");
  if (entries > 1000000) throw Error("the zip directory lists " + std::to_string(entries) + " records: too many for a vectors file");
  if (dirSize < entries * 46) throw Error("the zip directory is shorter than its records: the file is damaged");

  struct Record {
    std::string name;
    uint64_t start, size;
  };
  std::vector<Record> records;
  const uint8_t* p = b + dirOffset;
  const uint8_t* end = p + dirSize;
  for (uint64_t i = 0; i < entries; ++i) {
    if (end - p < 46 || u32(p) != 0x02014b50u) throw Error("the zip directory is damaged (record " + std::to_string(i) + ")");
    const uint16_t method = u16(p + 10);
    uint64_t comp = u32(p + 20), uncomp = u32(p + 24), local = u32(p + 42);
    const size_t nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32);
    if (static_cast<size_t>(end - p - 46) < nameLen + extraLen + commentLen) throw Error("the zip directory is damaged (record " + std::to_string(i) + ")");
    std::string name(reinterpret_cast<const char*>(p + 46), nameLen);
    const std::string shown = "zip record \"" + name.substr(0, 200) + "\"";
    if ((u16(p + 8) & 0x61) != 0) throw Error(shown + " is encrypted or a patch: not a file torch.save wrote");
    if (u16(p + 34) != 0) throw Error(shown + " lies on another disk: the file is damaged");
    if (comp == 0xFFFFFFFFu || uncomp == 0xFFFFFFFFu || local == 0xFFFFFFFFu) {
      // Zip64 values in extra field 0x0001: the uncompressed size, the compressed size, the local
      // header offset, each present only when its own field is 0xFFFFFFFF.
      const uint8_t* x = p + 46 + nameLen;
      const uint8_t* xend = x + extraLen;
      bool found = false;
      while (xend - x >= 4 && !found) {
        const uint16_t id = u16(x), len = u16(x + 2);
        if (static_cast<size_t>(xend - x - 4) < len) break;
        if (id == 1) {
          const uint8_t* v = x + 4;
          const uint8_t* vend = v + len;
          found = true;
          for (uint64_t* field : {&uncomp, &comp, &local}) {
            if (*field != 0xFFFFFFFFu) continue;
            if (vend - v < 8) {
              found = false;
              break;
            }
            *field = u64(v);
            v += 8;
          }
          break;
        }
        x += 4 + len;
      }
      if (!found) throw Error(shown + " has no zip64 sizes: the file is damaged");
    }
    if (method != 0) {
      throw Error(shown + " is compressed (method " + std::to_string(method) + "): torch.save stores its records uncompressed; re-save the vectors with torch.save");
    }
    if (comp != uncomp) throw Error(shown + " is stored uncompressed but claims " + std::to_string(uncomp) + " bytes unpacked and " + std::to_string(comp) + " stored: the file is damaged");
    // Its local header and data, where miniz will look for them.
    if (local > n || n - local < 30 || u32(b + local) != 0x04034b50u) throw Error(shown + " has no local header where the directory says: the file is damaged");
    const uint64_t dataStart = local + 30 + u16(b + local + 26) + u16(b + local + 28);
    if (dataStart > n || comp > n - dataStart) throw Error(shown + " runs past the end of the file: the file is truncated or damaged");
    records.push_back({std::move(name), dataStart, comp});
    p += 46 + nameLen + extraLen + commentLen;
  }

  // PyTorchStreamReader's constructor: every record lies in one folder named by the first
  // record; the version record (FOLDER/.data/version, else FOLDER/version; miniz compares names
  // without case) holds a file format version libtorch reads.
  const auto slash = records[0].name.find('/');
  if (slash == std::string::npos) throw Error("the zip archive's first record \"" + records[0].name.substr(0, 200) + "\" is not in a folder: not a file torch.save wrote");
  const std::string folder = records[0].name.substr(0, slash + 1);
  const auto same = [](const std::string& a, const std::string& b2) {
    return a.size() == b2.size() && std::equal(a.begin(), a.end(), b2.begin(), [](char x, char y) { return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y)); });
  };
  const Record* version = nullptr;
  for (const char* wanted : {".data/version", "version"}) {
    for (const auto& r : records) {
      if (version == nullptr && same(r.name, folder + wanted)) version = &r;
    }
  }
  if (version == nullptr) throw Error("the zip archive has no version record (" + folder.substr(0, 200) + "version): not a file torch.save wrote");
  const std::string text(reinterpret_cast<const char*>(b + version->start), static_cast<size_t>(std::min<uint64_t>(version->size, 64)));
  size_t k = 0;
  while (k < text.size() && std::isspace(static_cast<unsigned char>(text[k]))) ++k;
  uint64_t value = 0;
  size_t digits = 0;
  while (k < text.size() && std::isdigit(static_cast<unsigned char>(text[k])) && digits < 6) value = value * 10 + static_cast<uint64_t>(text[k++] - '0'), ++digits;
  if (digits == 0 || digits == 6) throw Error("the zip archive's version record does not hold a version number: the file is damaged");
  if (value < caffe2::serialize::kMinSupportedFileFormatVersion || value > caffe2::serialize::kMaxSupportedFileFormatVersion) {
    throw Error("the file has format version " + std::to_string(value) + ", which libtorch " + TORCH_VERSION + " does not read (versions " +
                std::to_string(caffe2::serialize::kMinSupportedFileFormatVersion) + " to " + std::to_string(caffe2::serialize::kMaxSupportedFileFormatVersion) + ")");
  }
}

// ---------------------------------------------------------------- 2. the pickle

struct StorageType {
  const char* name;  // torch.<name>
  int64_t itemsize;
  const char* dtype;
  bool floating;
};
const StorageType kStorageTypes[] = {
    {"FloatStorage", 4, "float32", true}, {"DoubleStorage", 8, "float64", true}, {"HalfStorage", 2, "float16", true},
    {"BFloat16Storage", 2, "bfloat16", true}, {"LongStorage", 8, "int64", false}, {"IntStorage", 4, "int32", false},
    {"ShortStorage", 2, "int16", false}, {"CharStorage", 1, "int8", false}, {"ByteStorage", 1, "uint8", false},
    {"BoolStorage", 1, "bool", false},
};

struct Node;
using NodeP = std::shared_ptr<Node>;
struct Node {
  enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor } kind;
  int64_t i = 0;                  // Int, Bool; Tensor: number of dimensions
  std::string s;                  // Str; Global: "module.name"
  const StorageType* storage = nullptr;  // Global of a storage type, Storage, Tensor
  int64_t numel = 0;              // Storage: elements
  std::vector<NodeP> items;       // Tuple, List; Dict: key, value, key, value, …
  int depth = 0;                  // containers: levels of containers below (leaves 0)
  // Inside some container: no longer changed. Every cycle would need a change to a container
  // that is already inside another one of the cycle (or an append to itself), so sealed
  // containers stay acyclic and their depth exact.
  bool sealed = false;
  explicit Node(Kind k) : kind(k) {}
};

constexpr int kMaxDepth = 64;
constexpr uint64_t kMaxMemo = 1u << 20;

std::string describe(const Node& v) {
  switch (v.kind) {
    case Node::Kind::None: return "None";
    case Node::Kind::Bool: return "a bool";
    case Node::Kind::Int: return "an int (" + std::to_string(v.i) + ")";
    case Node::Kind::Float: return "a float";
    case Node::Kind::Str: return "a string";
    case Node::Kind::Tuple: return v.items.empty() ? "an empty tuple" : "a tuple of " + std::to_string(v.items.size());
    case Node::Kind::List: return v.items.empty() ? "an empty list" : "a list of " + std::to_string(v.items.size());
    case Node::Kind::Dict: return "a dict with " + std::to_string(v.items.size() / 2) + " entr" + (v.items.size() == 2 ? "y" : "ies");
    case Node::Kind::Global: return "the Python object " + v.s;
    case Node::Kind::Storage: return "a bare storage (torch." + std::string(v.storage->name) + ")";
    case Node::Kind::Tensor: return "a tensor of dtype " + std::string(v.storage->dtype);
  }
  return "something else";
}

class PickleCheck {
 public:
  // recordSize(name): the size of zip record `name` (e.g. "data/0"); throws when it is missing.
  PickleCheck(const uint8_t* p, size_t n, std::function<uint64_t(const std::string&)> recordSize)
      : p_(p), n_(n), recordSize_(std::move(recordSize)) {}

  NodeP run() {
    for (;;) {
      at_ = pos_;
      const uint8_t op = take(1)[0];
      switch (op) {
        case 0x80: take(1); break;  // PROTO
        case '.': {                 // STOP
          if (!marks_.empty() || stack_.size() != 1) fail("ends with " + std::to_string(stack_.size()) + " values on its stack");
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case 'N': push(Node::Kind::None); break;
        case 0x88: push(Node::Kind::Bool)->i = 1; break;  // NEWTRUE
        case 0x89: push(Node::Kind::Bool)->i = 0; break;  // NEWFALSE
        case 'K': push(Node::Kind::Int)->i = take(1)[0]; break;            // BININT1
        case 'M': push(Node::Kind::Int)->i = u16(take(2)); break;          // BININT2
        case 'J': push(Node::Kind::Int)->i = static_cast<int32_t>(u32(take(4))); break;  // BININT
        case 0x8a: {  // LONG1: n bytes, little-endian two's complement
          const size_t len = take(1)[0];
          if (len > 8) fail("holds an integer of " + std::to_string(len) + " bytes");
          const uint8_t* b = take(len);
          uint64_t v = 0;
          for (size_t k = 0; k < len; ++k) v |= static_cast<uint64_t>(b[k]) << (8 * k);
          if (len > 0 && len < 8 && (b[len - 1] & 0x80)) v |= ~uint64_t{0} << (8 * len);
          push(Node::Kind::Int)->i = static_cast<int64_t>(v);
          break;
        }
        case 'G': take(8); push(Node::Kind::Float); break;  // BINFLOAT
        case 'X': {                                          // BINUNICODE
          const uint32_t len = u32(take(4));
          const uint8_t* b = take(len);
          push(Node::Kind::Str)->s.assign(reinterpret_cast<const char*>(b), len);
          break;
        }
        case ')': push(Node::Kind::Tuple); break;  // EMPTY_TUPLE
        case 't': tuple(popToMark()); break;       // TUPLE
        case 0x85: case 0x86: case 0x87: {         // TUPLE1..3
          std::vector<NodeP> items(op - 0x84);
          for (size_t k = items.size(); k-- > 0;) items[k] = pop();
          tuple(std::move(items));
          break;
        }
        case ']': push(Node::Kind::List); break;  // EMPTY_LIST
        case '}': push(Node::Kind::Dict); break;  // EMPTY_DICT
        case 'a': {                               // APPEND
          NodeP v = pop();
          add(top(), Node::Kind::List, {v});
          break;
        }
        case 'e': {  // APPENDS
          auto items = popToMark();
          add(top(), Node::Kind::List, items);
          break;
        }
        case 's': {  // SETITEM
          NodeP v = pop(), k = pop();
          add(top(), Node::Kind::Dict, {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          auto items = popToMark();
          if (items.size() % 2 != 0) fail("SETITEMS has an odd number of values");
          add(top(), Node::Kind::Dict, items);
          break;
        }
        case 'q': put(take(1)[0]); break;       // BINPUT
        case 'r': put(u32(take(4))); break;     // LONG_BINPUT
        case 'h': get(take(1)[0]); break;       // BINGET
        case 'j': get(u32(take(4))); break;     // LONG_BINGET
        case 'c': global(); break;              // GLOBAL
        case 'Q': persistent(); break;          // BINPERSID
        case 'R': reduce(); break;              // REDUCE
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("uses pickle opcode ") + hex +
               ", which torch.save's default format (pickle protocol 2) does not write: re-save the vectors with torch.save(tensor, path)");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("data.pkl (byte " + std::to_string(at_) + ") " + what);
  }
  const uint8_t* take(size_t k) {
    if (n_ - pos_ < k) fail("ends early: the file is truncated or damaged");
    const uint8_t* b = p_ + pos_;
    pos_ += k;
    return b;
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  NodeP push(Node::Kind k) {
    stack_.push_back(std::make_shared<Node>(k));
    return stack_.back();
  }
  NodeP pop() {
    if (stack_.size() <= floor()) fail("takes a value from an empty stack: the pickle is damaged");
    NodeP v = stack_.back();
    stack_.pop_back();
    return v;
  }
  NodeP top() {
    if (stack_.size() <= floor()) fail("reads a value from an empty stack: the pickle is damaged");
    return stack_.back();
  }
  std::vector<NodeP> popToMark() {
    if (marks_.empty()) fail("closes a MARK that was never opened: the pickle is damaged");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<NodeP> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  static bool isContainer(const Node& v) {
    return v.kind == Node::Kind::Tuple || v.kind == Node::Kind::List || v.kind == Node::Kind::Dict;
  }
  void contain(Node& parent, const NodeP& child) {
    if (child.get() == &parent) fail("puts a container into itself");
    child->sealed = true;
    parent.depth = std::max(parent.depth, isContainer(*child) ? child->depth + 1 : 1);
    if (parent.depth > kMaxDepth) fail("nests containers more than " + std::to_string(kMaxDepth) + " levels deep");
  }
  void tuple(std::vector<NodeP> items) {
    NodeP t = std::make_shared<Node>(Node::Kind::Tuple);
    for (auto& v : items) contain(*t, v);
    t->items = std::move(items);
    stack_.push_back(std::move(t));
  }
  void add(const NodeP& target, Node::Kind kind, const std::vector<NodeP>& items) {
    if (target->kind != kind) fail("adds items to " + describe(*target) + ": the pickle is damaged");
    if (target->sealed) fail("changes a container after it was put into another one, which torch.save never does");
    for (const auto& v : items) {
      contain(*target, v);
      target->items.push_back(v);
    }
  }
  void put(uint64_t id) {
    if (id >= kMaxMemo) fail("uses memo slot " + std::to_string(id) + ", more than a vectors file needs");
    memo_[id] = top();
  }
  void get(uint64_t id) {
    auto it = memo_.find(id);
    if (it == memo_.end()) fail("reads memo slot " + std::to_string(id) + ", which was never written: the pickle is damaged");
    stack_.push_back(it->second);
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') {
      if (pos_ - start > 256) fail("names a global longer than 256 characters");
      ++pos_;
    }
    if (pos_ >= n_) fail("ends early: the file is truncated or damaged");
    return std::string(reinterpret_cast<const char*>(p_ + start), pos_++ - start);
  }
  void global() {
    const std::string module = line(), name = line();
    NodeP g = push(Node::Kind::Global);
    g->s = module + "." + name;
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") return;
    if (module == "torch._utils" && name == "_rebuild_parameter") {
      // libtorch 1.13's unpickler does not know it ("Unpickler found unknown type").
      fail("holds a torch.nn.Parameter, which libtorch cannot read: save its data instead (torch.save(p.detach(), path))");
    }
    if (module == "collections" && name == "OrderedDict") return;
    if (module == "torch") {
      for (const auto& st : kStorageTypes) {
        if (name == st.name) {
          g->storage = &st;
          return;
        }
      }
    }
    fail("refers to the Python object " + g->s +
         ", which is not a torch tensor or container: only tensors and lists, tuples and dicts of them are read (nothing in the file is run)");
  }
  void persistent() {
    NodeP pid = pop();
    const auto& e = pid->items;
    if (pid->kind != Node::Kind::Tuple || e.size() != 5 || e[0]->kind != Node::Kind::Str || e[0]->s != "storage" ||
        e[1]->kind != Node::Kind::Global || e[1]->storage == nullptr || e[2]->kind != Node::Kind::Str ||
        e[3]->kind != Node::Kind::Str || e[4]->kind != Node::Kind::Int) {
      fail("has a persistent id that is not ('storage', torch.<Type>Storage, key, location, size): not a file torch.save wrote");
    }
    const StorageType* st = e[1]->storage;
    const int64_t numel = e[4]->i;
    if (numel < 0 || numel > INT64_MAX / st->itemsize) fail("has a storage of " + std::to_string(numel) + " elements");
    if (numel > 0) {
      const uint64_t have = recordSize_("data/" + e[2]->s);
      const uint64_t need = static_cast<uint64_t>(numel) * static_cast<uint64_t>(st->itemsize);
      if (have < need) {
        fail("has a storage of " + std::to_string(numel) + " " + st->dtype + " values (" + std::to_string(need) + " bytes) whose record data/" + e[2]->s +
             " holds only " + std::to_string(have) + " bytes: the file is truncated or damaged");
      }
    }
    NodeP s = push(Node::Kind::Storage);
    s->storage = st;
    s->numel = numel;
  }
  static bool intTuple(const Node& v) {
    if (v.kind != Node::Kind::Tuple) return false;
    for (const auto& x : v.items)
      if (x->kind != Node::Kind::Int) return false;
    return true;
  }
  void reduce() {
    NodeP args = pop(), fn = pop();
    if (fn->kind != Node::Kind::Global || args->kind != Node::Kind::Tuple) fail("calls " + describe(*fn) + ": the pickle is damaged");
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      if (!a.empty()) fail("builds an OrderedDict from arguments, which torch.save never does");
      push(Node::Kind::Dict);
      return;
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if ((a.size() != 6 && a.size() != 7) || a[0]->kind != Node::Kind::Storage || a[1]->kind != Node::Kind::Int || !intTuple(*a[2]) ||
          !intTuple(*a[3]) || a[2]->items.size() != a[3]->items.size() || a[4]->kind != Node::Kind::Bool || a[5]->kind != Node::Kind::Dict) {
        fail("builds a tensor from arguments that are not (storage, offset, size, stride, requires_grad, hooks)");
      }
      const Node& storage = *a[0];
      const int64_t offset = a[1]->i;
      const auto& size = a[2]->items;
      const auto& stride = a[3]->items;
      if (size.size() > 16) fail("builds a tensor of " + std::to_string(size.size()) + " dimensions");
      if (offset < 0) fail("builds a tensor at a negative storage offset");
      // The last element the view reaches must lie inside the storage (an empty view reaches none).
      __int128 last = offset;
      bool empty = false;
      for (size_t k = 0; k < size.size(); ++k) {
        if (size[k]->i < 0 || stride[k]->i < 0) fail("builds a tensor with a negative size or stride");
        if (size[k]->i == 0) empty = true;
        last += static_cast<__int128>(size[k]->i - 1) * stride[k]->i;
      }
      if (empty ? offset > storage.numel : last >= storage.numel) {
        fail("builds a tensor that reaches past the end of its storage (" + std::to_string(storage.numel) + " elements): the file is damaged");
      }
      NodeP t = push(Node::Kind::Tensor);
      t->storage = storage.storage;
      t->i = static_cast<int64_t>(size.size());
      return;
    }
    fail("calls " + fn->s + ", which builds no tensor");
  }

  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0, at_ = 0;
  std::function<uint64_t(const std::string&)> recordSize_;
  std::vector<NodeP> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, NodeP> memo_;
};

const char* expected = "expected a tensor, or a list or tuple of tensors (torch.save(tensor) or torch.save([t0, t1, …]))";

// What the pickle holds must be a floating-point tensor or a non-empty list/tuple of them.
void checkRoot(const Node& root) {
  const auto floating = [](const Node& v) { return v.kind == Node::Kind::Tensor && v.storage->floating; };
  const auto whatTensor = [](const Node& v) {
    return describe(v) + ": only floating-point tensors (float32, float64, float16, bfloat16) can be imported";
  };
  if (root.kind == Node::Kind::Tensor) {
    if (!floating(root)) throw Error("it holds " + whatTensor(root));
    return;
  }
  if (root.kind == Node::Kind::List || root.kind == Node::Kind::Tuple) {
    const std::string what = root.kind == Node::Kind::List ? "list" : "tuple";
    if (root.items.empty()) throw Error("it holds an empty " + what + ": no vectors to import");
    for (size_t k = 0; k < root.items.size(); ++k) {
      const Node& v = *root.items[k];
      if (v.kind == Node::Kind::Tensor && !floating(v)) throw Error("it holds a " + what + " whose item " + std::to_string(k) + " is " + whatTensor(v));
      if (v.kind != Node::Kind::Tensor) throw Error("it holds a " + what + " whose item " + std::to_string(k) + " is " + describe(v) + ", not a tensor: " + expected);
      if (v.i != 1) {
        throw Error("it holds a " + what + " whose item " + std::to_string(k) + " is a tensor of " + std::to_string(v.i) +
                    " dimensions: a " + what + " must hold vectors, tensors of shape [d]");
      }
    }
    return;
  }
  throw Error("it holds " + describe(root) + ": " + expected);
}

// ---------------------------------------------------------------- 3. libtorch's reader

void checkInStorage(const at::Tensor& t, size_t k) {
  const int64_t item = static_cast<int64_t>(t.element_size());
  __int128 last = t.storage_offset();
  bool empty = false;
  for (int64_t dim = 0; dim < t.dim(); ++dim) {
    if (t.size(dim) < 0 || t.stride(dim) < 0) throw Error("tensor " + std::to_string(k) + " has a negative size or stride");
    if (t.size(dim) == 0) empty = true;
    last += static_cast<__int128>(t.size(dim) - 1) * t.stride(dim);
  }
  if (t.storage_offset() < 0 || (!empty && (last + 1) * item > static_cast<__int128>(t.storage().nbytes()))) {
    throw Error("tensor " + std::to_string(k) + " reaches past the end of its storage: the file is damaged");
  }
}

const char* dtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: return nullptr;
  }
}

std::vector<at::Tensor> readTensors(const uint8_t* bytes, size_t size) {
  checkZip(bytes, size);
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> opened;
  try {
    opened = std::make_unique<caffe2::serialize::PyTorchStreamReader>(std::make_shared<BytesAdapter>(bytes, size));
  } catch (const c10::Error& e) {
    throw Error(std::string("the zip archive is not one torch.save writes: ") + e.what_without_backtrace());
  }
  caffe2::serialize::PyTorchStreamReader& reader = *opened;
  if (!reader.hasRecord("data.pkl")) {
    throw Error("the zip archive holds no data.pkl: not a file torch.save wrote (a TorchScript module from torch.jit.save is not a vectors file)");
  }
  at::DataPtr pickle;
  size_t pickleSize = 0;
  std::tie(pickle, pickleSize) = reader.getRecord("data.pkl");
  std::map<std::string, uint64_t> sizes;
  PickleCheck check(static_cast<const uint8_t*>(pickle.get()), pickleSize, [&](const std::string& name) -> uint64_t {
    auto it = sizes.find(name);
    if (it != sizes.end()) return it->second;
    if (!reader.hasRecord(name)) throw Error("data.pkl names the record " + name + ", which the zip archive does not hold: the file is damaged");
    const uint64_t n = std::get<1>(reader.getRecord(name));
    sizes[name] = n;
    return n;
  });
  checkRoot(*check.run());

  c10::IValue value;
  try {
    value = torch::jit::readArchiveAndTensors("data", "", "", {}, {}, at::Device(at::kCPU), reader);
  } catch (const c10::Error& e) {
    throw Error(std::string("libtorch could not read it: ") + e.what_without_backtrace());
  }
  std::vector<at::Tensor> out;
  if (value.isTensor()) {
    out.push_back(value.toTensor());
  } else if (value.isList() || value.isTuple()) {
    const std::vector<c10::IValue> items = value.isList() ? value.toListRef().vec() : value.toTupleRef().elements().vec();
    for (const auto& v : items) {
      if (!v.isTensor()) throw Error("it holds a list with an item of kind " + v.tagKind() + ", not a tensor");
      out.push_back(v.toTensor());
    }
  } else {
    throw Error("it holds a value of kind " + value.tagKind() + ": " + expected);
  }
  for (size_t k = 0; k < out.size(); ++k) {
    if (!out[k].defined() || dtypeName(out[k].scalar_type()) == nullptr) throw Error("tensor " + std::to_string(k) + " is not a floating-point tensor");
    checkInStorage(out[k], k);
  }
  return out;
}

}  // namespace

Napi::Value LoadPt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(env, "loadPt(bytes): bytes must be a Uint8Array (or Buffer)");
  }
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  try {
    const auto tensors = readTensors(bytes.Data(), bytes.ByteLength());
    Napi::Array result = Napi::Array::New(env, tensors.size());
    for (size_t k = 0; k < tensors.size(); ++k) {
      const at::Tensor& t = tensors[k];
      const at::Tensor f = t.to(at::kFloat).contiguous();
      Napi::Array shape = Napi::Array::New(env, static_cast<size_t>(t.dim()));
      for (int64_t dim = 0; dim < t.dim(); ++dim) shape.Set(static_cast<uint32_t>(dim), Napi::Number::New(env, static_cast<double>(t.size(dim))));
      Napi::Float32Array data = Napi::Float32Array::New(env, static_cast<size_t>(f.numel()));
      if (f.numel() > 0) std::memcpy(data.Data(), f.data_ptr<float>(), static_cast<size_t>(f.numel()) * sizeof(float));
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("shape", shape);
      entry.Set("dtype", Napi::String::New(env, dtypeName(t.scalar_type())));
      entry.Set("data", data);
      result.Set(static_cast<uint32_t>(k), entry);
    }
    return result;
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value SavePt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = optionsArgument(info, "savePt({ data, n, d })");
  const int64_t n = getInt(o, "n"), d = getInt(o, "d");
  if (n < 1 || d < 1 || n > (int64_t{1} << 31) || d > (int64_t{1} << 31)) throw Napi::RangeError::New(env, "savePt: n and d must be between 1 and 2^31");
  try {
    const torch::Tensor t = float32Tensor(o, "data", {n, d});
    const std::vector<char> bytes = torch::pickle_save(t);
    return Napi::Buffer<char>::Copy(env, bytes.data(), bytes.size());
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace melbo

// "[2, 3, 64]": how error messages write a tensor shape.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace melbo {

inline std::string shapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace melbo

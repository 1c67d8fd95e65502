#include "js_convert.h"

#include "shape_text.h"

#include <cmath>

namespace melbo {

static Napi::Value need(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' is required");
  return v;
}

Napi::Object optionsArgument(const Napi::CallbackInfo& info, const char* call) {
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), std::string(call) + ": options object required");
  return info[0].As<Napi::Object>();
}

bool has(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

// A JS number as an exact integer. Range first: casting NaN, ±∞ or a value past int64 to int64
// is undefined behaviour; within ±2^53 every double that equals its truncation is exact.
static int64_t exactInteger(Napi::Env env, double x, const char* key) {
  constexpr double limit = 9007199254740992.0;  // 2^53
  if (!(x >= -limit && x <= limit) || x != std::trunc(x)) {
    throw Napi::TypeError::New(env, std::string("option '") + key + "' must be an integer");
  }
  return static_cast<int64_t>(x);
}

int64_t getInt(const Napi::Object& o, const char* key) { return exactInteger(o.Env(), getNumber(o, key), key); }

// The option `key`, present and of the kind `is` tests ("a number", "a boolean", …), else a TypeError.
static Napi::Value needKind(const Napi::Object& o, const char* key, bool (Napi::Value::*is)() const, const char* kind) {
  Napi::Value v = need(o, key);
  if (!(v.*is)()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be " + kind);
  return v;
}

double getNumber(const Napi::Object& o, const char* key) {
  return needKind(o, key, &Napi::Value::IsNumber, "a number").As<Napi::Number>().DoubleValue();
}

bool getBool(const Napi::Object& o, const char* key) {
  return needKind(o, key, &Napi::Value::IsBoolean, "a boolean").As<Napi::Boolean>().Value();
}

bool getFlag(const Napi::Object& o, const char* key) { return has(o, key) && getBool(o, key); }

std::string getString(const Napi::Object& o, const char* key) {
  return needKind(o, key, &Napi::Value::IsString, "a string").As<Napi::String>().Utf8Value();
}

std::vector<int64_t> getIntList(const Napi::Object& o, const char* key) {
  std::vector<int64_t> out;
  if (!has(o, key)) return out;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must hold integers");
    out.push_back(exactInteger(o.Env(), e.As<Napi::Number>().DoubleValue(), key));
  }
  return out;
}

torch::Tensor float32Tensor(const Napi::Object& o, const char* key, std::vector<int64_t> shape) {
  Napi::Value v = need(o, key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a Float32Array");
  }
  auto arr = v.As<Napi::Float32Array>();
  int64_t numel = 1;
  for (auto n : shape) numel *= n;
  if (static_cast<int64_t>(arr.ElementLength()) != numel) {
    throw Napi::RangeError::New(o.Env(), std::string("option '") + key + "' has " + std::to_string(arr.ElementLength()) +
                                             " values, expected " + shapeText(shape) + " = " + std::to_string(numel));
  }
  if (numel == 0) return torch::zeros(shape);
  return torch::from_blob(arr.Data(), shape, torch::kFloat).clone();
}

torch::Tensor int32TensorAsLong(const Napi::Object& o, const char* key) {
  Napi::Value v = need(o, key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be an Int32Array");
  }
  auto arr = v.As<Napi::Int32Array>();
  auto n = static_cast<int64_t>(arr.ElementLength());
  if (n == 0) return torch::zeros({0}, torch::kLong);
  return torch::from_blob(arr.Data(), {n}, torch::kInt).to(torch::kLong);
}

torch::Tensor float64Rows(const Napi::Object& o, const char* key, int64_t d) {
  Napi::Value v = need(o, key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a Float64Array");
  }
  auto arr = v.As<Napi::Float64Array>();
  if (d < 1 || arr.ElementLength() % static_cast<size_t>(d) != 0) {
    throw Napi::RangeError::New(o.Env(), std::string("option '") + key + "' must hold [n * " + std::to_string(d) + "] values");
  }
  const auto n = static_cast<int64_t>(arr.ElementLength()) / d;
  if (n == 0) return torch::zeros({0, d}, torch::kDouble);
  return torch::from_blob(arr.Data(), {n, d}, torch::kDouble).clone();
}

template <typename ArrayT>
static ArrayT exportTensor(Napi::Env env, torch::Tensor t, torch::ScalarType type) {
  // Workers return host tensors; this guard keeps a device pointer from ever reaching JS.
  t = t.to(torch::kCPU, type).contiguous();
  if (t.numel() == 0) return ArrayT::New(env, 0);
  // A view into a bigger storage would expose (and pin) memory outside it: copy it out.
  if (t.storage_offset() != 0 || t.storage().nbytes() != t.nbytes()) t = t.clone();
  auto* holder = new torch::Tensor(t);
  auto buffer = Napi::ArrayBuffer::New(
      env, holder->data_ptr(), holder->nbytes(), [](Napi::Env, void*, torch::Tensor* h) { delete h; }, holder);
  return ArrayT::New(env, static_cast<size_t>(t.numel()), buffer, 0);
}

Napi::Float32Array toFloat32Array(Napi::Env env, torch::Tensor t) {
  return exportTensor<Napi::Float32Array>(env, std::move(t), torch::kFloat);
}

Napi::Int32Array toInt32Array(Napi::Env env, torch::Tensor t) {
  return exportTensor<Napi::Int32Array>(env, std::move(t), torch::kInt);
}

}  // namespace melbo

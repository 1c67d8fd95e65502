#include "model_object.h"

#include "abort_flag.h"
#include "generate.h"
#include "melbo_train.h"
#include "ortho.h"
#include "js_convert.h"
#include "js_progress.h"
#include "projection.h"  // projectionCudaBuilt
#include "promise_worker.h"
#include "slice.h"
#include "weights.h"

namespace melbo {
namespace {

struct AddonData {
  Napi::FunctionReference modelConstructor;
  // The model Load() hands to the constructor it calls: set and taken within that one call (JS
  // is single-threaded). Not an External argument: napi_create_external allocates a record on
  // Node's side that lives until V8 collects the External, which LeakSanitizer reports as a leak
  // when that is after exit (scripts/test-sanitize.sh).
  std::shared_ptr<Qwen2> pending;
};

torch::ScalarType computeDtype(const std::string& name, Napi::Env env) {
  if (name == "f32") return torch::kFloat;
  if (name == "bf16") return torch::kBFloat16;
  throw Napi::TypeError::New(env, "option 'dtype' must be 'f32' or 'bf16', got '" + name + "'");
}

// orthoBlock's inBlock: "gram-schmidt" (default), "first-then-symmetric" or "symmetric".
InBlock parseInBlock(Napi::Env env, const Napi::Object& o) {
  try {
    return inBlockFromName(getString(o, "inBlock"));
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(env, e.what());
  }
}

// "cpu" (default), "cuda" or "cuda:N". A GPU must be visible to this build's libtorch.
torch::Device computeDevice(const Napi::Object& o) {
  Napi::Env env = o.Env();
  if (!has(o, "device")) return torch::Device(torch::kCPU);
  const std::string name = getString(o, "device");
  if (name == "cpu") return torch::Device(torch::kCPU);
  const bool cudaName = name == "cuda" || (name.rfind("cuda:", 0) == 0 && name.size() > 5 &&
                                           name.find_first_not_of("0123456789", 5) == std::string::npos);
  if (!cudaName) throw Napi::TypeError::New(env, "option 'device' must be 'cpu', 'cuda' or 'cuda:N', got '" + name + "'");
  if (!torch::cuda::is_available()) {
    throw Napi::Error::New(env, "device '" + name + "': no CUDA device is available to this melbo build (libtorch " +
                                    std::string(TORCH_VERSION) + (projectionCudaBuilt() ? "" : ", a CPU-only build") +
                                    "); build against a CUDA libtorch (README, Set-up details) or use 'cpu'");
  }
  const int64_t index = name == "cuda" ? 0 : std::stoll(name.substr(5));
  if (index >= static_cast<int64_t>(torch::cuda::device_count())) {
    throw Napi::RangeError::New(env, "device '" + name + "': this machine has " + std::to_string(torch::cuda::device_count()) + " CUDA device(s)");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

Qwen2Config parseConfig(const Napi::Object& o) {
  Qwen2Config c;
  c.hidden = getInt(o, "hiddenSize");
  c.intermediate = getInt(o, "intermediateSize");
  c.layers = getInt(o, "numLayers");
  c.heads = getInt(o, "numHeads");
  c.kvHeads = getInt(o, "numKvHeads");
  c.headDim = getInt(o, "headDim");
  c.vocab = getInt(o, "vocabSize");
  c.rmsEps = getNumber(o, "rmsNormEps");
  c.ropeTheta = getNumber(o, "ropeTheta");
  c.tied = getBool(o, "tieWordEmbeddings");
  return c;
}

LoadRequest parseLoad(const Napi::Object& o) {
  Napi::Env env = o.Env();
  LoadRequest r;
  r.device = computeDevice(o);  // first: a device this build cannot use is the error to report
  if (!has(o, "config") || !o.Get("config").IsObject()) throw Napi::TypeError::New(env, "option 'config' is required");
  r.cfg = parseConfig(o.Get("config").As<Napi::Object>());
  r.dtype = computeDtype(getString(o, "dtype"), env);
  r.firstBlock = getInt(o, "firstBlock");
  r.lastBlock = getInt(o, "lastBlock");
  r.embedding = getBool(o, "embedding");
  r.head = getBool(o, "head");
  if (!o.Get("tensors").IsArray()) throw Napi::TypeError::New(env, "option 'tensors' must be an array");
  Napi::Array list = o.Get("tensors").As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Object t = list.Get(i).As<Napi::Object>();
    TensorSource s;
    s.name = getString(t, "name");
    s.role = getString(t, "role");
    s.block = getInt(t, "block");
    s.path = getString(t, "path");
    s.dtype = getString(t, "dtype");
    s.shape = getIntList(t, "shape");
    s.offset = static_cast<uint64_t>(getInt(t, "offset"));
    s.nbytes = static_cast<uint64_t>(getInt(t, "nbytes"));
    r.tensors.push_back(std::move(s));
  }
  return r;
}

// The fields every optimiser loop reads (NativeLoopFields in src/native.ts), and its abort flag.
LoopSettings parseLoop(const Napi::Object& o) {
  LoopSettings loop;
  loop.steps = getInt(o, "steps");
  loop.source = getInt(o, "source");
  loop.target = getInt(o, "target");
  loop.lr = getNumber(o, "lr");
  loop.beta1 = getNumber(o, "beta1");
  loop.beta2 = getNumber(o, "beta2");
  loop.eps = getNumber(o, "eps");
  loop.progressEvery = std::max<int64_t>(1, getInt(o, "progressEvery"));
  loop.aborted = abortCheck(o);
  return loop;
}

// Runs run(request), a native optimiser loop, on a worker thread and resolves with
// convert(result). `callback` (may be undefined) receives {step, steps, <mean>, <extreme>}
// events on the JS thread, the two statistics named by `stats`; the channel is released however
// the job ends, so that a finished job never keeps the process alive.
template <typename Result, typename Request, typename Run, typename Convert>
Napi::Value startLoop(Napi::Env env, const Napi::Value& callback, const char* name, std::pair<const char*, const char*> stats,
                      Request request, Run run, Convert convert) {
  ProgressChannel progress(env, callback, name);
  if (progress.active()) {
    request.loop.progress = [progress, stats](const LoopProgress& p) {
      progress.report({{"step", static_cast<double>(p.step)}, {"steps", static_cast<double>(p.steps)},
                       {stats.first, p.mean}, {stats.second, p.extreme}});
    };
  }
  return PromiseWorker<Result>::Start(
      env,
      [request, run, progress]() {
        ReleaseOnExit guard{progress};
        return run(request);
      },
      convert);
}

}  // namespace

Napi::Function ModelObject::Define(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "Model",
                                    {
                                        InstanceMethod<&ModelObject::Forward>("forward"),
                                        InstanceMethod<&ModelObject::OrthoLossGrad>("orthoLossGrad"),
                                        InstanceMethod<&ModelObject::Generate>("generate"),
                                        InstanceMethod<&ModelObject::OrthoBlock>("orthoBlock"),
                                        InstanceMethod<&ModelObject::TrainBlock>("trainBlock"),
                                        InstanceMethod<&ModelObject::SliceMean>("sliceMean"),
                                        InstanceMethod<&ModelObject::Release>("release"),
                                        InstanceMethod<&ModelObject::Info>("info"),
                                        InstanceMethod<&ModelObject::Dispose>("dispose"),
                                    });
  auto* data = new AddonData{Napi::Persistent(ctor)};
  env.SetInstanceData<AddonData>(data);
  return ctor;
}

ModelObject::ModelObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelObject>(info) {
  // Only Load() constructs models: it leaves the loaded weights in AddonData::pending.
  auto* data = info.Env().GetInstanceData<AddonData>();
  if (info.Length() != 0 || data == nullptr || !data->pending) {
    throw Napi::TypeError::New(info.Env(), "Model cannot be constructed directly: use loadModel()");
  }
  model_ = std::move(data->pending);
}

std::shared_ptr<Qwen2> ModelObject::model(Napi::Env env) const {
  if (!model_) throw Napi::Error::New(env, "this model was disposed");
  return model_;
}

Napi::Value ModelObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LoadRequest request = parseLoad(optionsArgument(info, "loadModel(options)"));
  using Result = std::shared_ptr<Qwen2>;
  return PromiseWorker<Result>::Start(
      env, [request]() { return std::make_shared<Qwen2>(loadQwen2(request)); },
      [](Napi::Env env, Result& loaded) -> Napi::Value {
        auto* data = env.GetInstanceData<AddonData>();
        data->pending = loaded;  // taken by the constructor
        try {
          Napi::Value object = data->modelConstructor.New({});
          data->pending.reset();
          return object;
        } catch (...) {
          data->pending.reset();
          throw;
        }
      });
}

// forward({tokens: Int32Array [B*T], batch, layers: number[], logits: boolean,
//          steer?: {vectors: Float32Array [B*d], at}}) -> {resid: Float32Array[] (one per layer), logits?}
Napi::Value ModelObject::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object o = optionsArgument(info, "forward(options)");
  ForwardRequest r;
  auto flat = int32TensorAsLong(o, "tokens");
  const int64_t B = getInt(o, "batch");
  if (B < 1 || flat.numel() == 0 || flat.numel() % B != 0) {
    throw Napi::RangeError::New(env, "forward: tokens must be a non-empty [batch * seq] array");
  }
  r.tokens = flat.view({B, flat.numel() / B});
  r.layers = getIntList(o, "layers");
  r.logits = getBool(o, "logits");
  if (has(o, "steer")) {
    Napi::Object s = o.Get("steer").As<Napi::Object>();
    r.steerAt = getInt(s, "at");
    r.steer = float32Tensor(s, "vectors", {B, model->cfg.hidden});
  }
  using Result = ForwardResult;
  return PromiseWorker<Result>::Start(
      env, [model, r]() { return forward(*model, r); },
      [](Napi::Env env, Result& res) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Array resid = Napi::Array::New(env, res.resid.size());
        for (size_t i = 0; i < res.resid.size(); ++i) resid.Set(static_cast<uint32_t>(i), toFloat32Array(env, res.resid[i]));
        out.Set("resid", resid);
        if (res.logits.defined()) out.Set("logits", toFloat32Array(env, res.logits));
        return out;
      });
}

// orthoLossGrad({x: Float32Array [T*d], seq, thetas: Float32Array [B*d], batch, z0: Float32Array [d],
//                source, target}) -> {loss: Float32Array [B], grad: Float32Array [B*d]}
Napi::Value ModelObject::OrthoLossGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object o = optionsArgument(info, "orthoLossGrad(options)");
  const int64_t d = model->cfg.hidden;
  SliceRequest r;
  r.source = getInt(o, "source");
  r.target = getInt(o, "target");
  r.x = float32Tensor(o, "x", {getInt(o, "seq"), d});
  r.thetas = float32Tensor(o, "thetas", {getInt(o, "batch"), d});
  r.z0 = float32Tensor(o, "z0", {d});
  using Result = SliceResult;
  return PromiseWorker<Result>::Start(
      env, [model, r]() { return orthoLossGrad(*model, r); },
      [](Napi::Env env, Result& res) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", toFloat32Array(env, res.loss));
        out.Set("grad", toFloat32Array(env, res.grad));
        return out;
      });
}

// sliceMean({x: Float32Array [T*d], seq, thetas: Float32Array [B*d], batch, source, target})
//   -> Float32Array [B*d]: z(theta_b) = mean over positions of f_{s->t}(x + theta_b)
Napi::Value ModelObject::SliceMean(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object o = optionsArgument(info, "sliceMean(options)");
  const int64_t d = model->cfg.hidden;
  auto x = float32Tensor(o, "x", {getInt(o, "seq"), d});
  auto thetas = float32Tensor(o, "thetas", {getInt(o, "batch"), d});
  const int64_t source = getInt(o, "source"), target = getInt(o, "target");
  using Result = torch::Tensor;
  return PromiseWorker<Result>::Start(
      env,
      [model, x, thetas, source, target]() {
        torch::NoGradGuard noGrad;
        model->requireSlice(source, target, "sliceMean");
        return toHost(sliceMean(*model, x, thetas, source, target, model->rope(0, x.size(0))));
      },
      [](Napi::Env env, Result& z) -> Napi::Value { return toFloat32Array(env, z); });
}

// generate({tokens: Int32Array [T], vectors?: Float32Array [B*d], batch, at, maxNewTokens,
//           temperature, topP, seed, rowSeeds?: number[] [B], stopTokens: number[], firstLogits?: boolean})
//   -> {tokens: Int32Array [B*max], lengths: Int32Array [B], firstLogits?: Float32Array [B*V]}
Napi::Value ModelObject::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object o = optionsArgument(info, "generate(options)");
  GenerateRequest r;
  r.prompt = int32TensorAsLong(o, "tokens");
  if (has(o, "vectors")) {
    r.vectors = float32Tensor(o, "vectors", {getInt(o, "batch"), model->cfg.hidden});
    r.at = getInt(o, "at");
  }
  r.maxNewTokens = getInt(o, "maxNewTokens");
  if (r.maxNewTokens < 0) throw Napi::RangeError::New(env, "generate: maxNewTokens must be >= 0");
  r.temperature = getNumber(o, "temperature");
  r.topP = getNumber(o, "topP");
  r.seed = static_cast<uint64_t>(getInt(o, "seed"));
  r.stopTokens = getIntList(o, "stopTokens");
  if (has(o, "rowSeeds")) r.rowSeeds = getIntList(o, "rowSeeds");
  r.firstLogits = getFlag(o, "firstLogits");
  using Result = GenerateResult;
  return PromiseWorker<Result>::Start(
      env, [model, r]() { return generate(*model, r); },
      [](Napi::Env env, Result& res) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("tokens", toInt32Array(env, res.tokens));
        out.Set("lengths", toInt32Array(env, res.lengths));
        if (res.firstLogits.defined()) out.Set("firstLogits", toFloat32Array(env, res.firstLogits));
        return out;
      });
}

// orthoBlock({x: Float32Array [T*d], seq, theta0: Float32Array [d], basis: Float64Array [m*d], rows, steps,
//             source, target, lr, beta1, beta2, eps, projectGradient, lossTolerance, progressEvery,
//             traceEvery?, abort?: AbortFlag}, onProgress?: (p) => void)
//   -> {thetas: Float32Array [rows*d], losses: Float32Array [rows], steps: Int32Array [rows],
//       trace?: Float32Array [points*rows]}
Napi::Value ModelObject::OrthoBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object o = optionsArgument(info, "orthoBlock(options)");
  const int64_t d = model->cfg.hidden;
  OrthoRequest r;
  r.x = float32Tensor(o, "x", {getInt(o, "seq"), d});
  r.theta0 = float32Tensor(o, "theta0", {d});
  r.basis = float64Rows(o, "basis", d);
  r.loop = parseLoop(o);
  r.rows = getInt(o, "rows");
  r.projectGradient = getBool(o, "projectGradient");
  if (has(o, "starts")) r.starts = float32Tensor(o, "starts", {r.rows, d});
  r.inBlock = parseInBlock(env, o);
  r.projectGradientInBlock = getBool(o, "projectGradientInBlock");
  r.lossTolerance = getNumber(o, "lossTolerance");
  r.traceEvery = std::max<int64_t>(0, getInt(o, "traceEvery"));
  return startLoop<OrthoResult>(
      env, info[1], "melbo-ortho-progress", {"meanLoss", "minLoss"}, r,
      [model](const OrthoRequest& request) { return orthoBlock(*model, request); },
      [](Napi::Env env, OrthoResult& res) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("thetas", toFloat32Array(env, res.thetas));
        out.Set("losses", toFloat32Array(env, res.losses));
        out.Set("steps", toInt32Array(env, res.steps));
        if (res.trace.defined()) out.Set("trace", toFloat32Array(env, res.trace));
        return out;
      });
}

// trainBlock({examples: [{x: Float32Array [T*d], seq, positions: Int32Array [n], z0: Float32Array [n*d]}],
//             thetas: Float32Array [V*d] (start directions), rows, learned: Float64Array [m*d], radius, p, q,
//             steps, source, target, lr, beta1, beta2, eps, weightDecay, amsgrad, orthogonal, progressEvery,
//             abort?: AbortFlag}, onProgress?: (p) => void)
//   -> {thetas: Float32Array [V*d], objectives: Float32Array [V], trace: Float32Array [steps*V],
//       radiusError: Float32Array [steps]}
Napi::Value ModelObject::TrainBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object o = optionsArgument(info, "trainBlock(options)");
  const int64_t d = model->cfg.hidden;
  TrainRequest r;
  if (!o.Get("examples").IsArray()) throw Napi::TypeError::New(env, "option 'examples' must be an array");
  Napi::Array examples = o.Get("examples").As<Napi::Array>();
  for (uint32_t i = 0; i < examples.Length(); ++i) {
    if (!examples.Get(i).IsObject()) throw Napi::TypeError::New(env, "option 'examples' must hold objects");
    Napi::Object e = examples.Get(i).As<Napi::Object>();
    TrainExample ex;
    ex.x = float32Tensor(e, "x", {getInt(e, "seq"), d});
    ex.positions = int32TensorAsLong(e, "positions");
    ex.z0 = float32Tensor(e, "z0", {ex.positions.size(0), d});
    r.examples.push_back(std::move(ex));
  }
  r.thetas = float32Tensor(o, "thetas", {getInt(o, "rows"), d});
  r.learned = float64Rows(o, "learned", d);
  r.radius = getNumber(o, "radius");
  r.p = getNumber(o, "p");
  r.q = getNumber(o, "q");
  r.loop = parseLoop(o);
  r.weightDecay = getNumber(o, "weightDecay");
  r.amsgrad = getBool(o, "amsgrad");
  r.orthogonal = getBool(o, "orthogonal");
  return startLoop<TrainResult>(
      env, info[1], "melbo-train-progress", {"meanObjective", "maxObjective"}, r,
      [model](const TrainRequest& request) { return trainBlock(*model, request); },
      [](Napi::Env env, TrainResult& res) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("thetas", toFloat32Array(env, res.thetas));
        out.Set("objectives", toFloat32Array(env, res.objectives));
        out.Set("trace", toFloat32Array(env, res.trace));
        out.Set("radiusError", toFloat32Array(env, res.radiusError));
        return out;
      });
}

// release({below, embedding}): drop blocks below `below` (and the embedding) that a job no longer needs.
Napi::Value ModelObject::Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  // Copy on write: a job running on a libuv thread holds its own shared_ptr to the current model
  // and keeps reading every block it had; the released tensors are freed when the last job that
  // holds them ends (at once when none runs). The copy shares all other tensors.
  auto next = std::make_shared<Qwen2>(*model);
  next->releaseBelow(getInt(o, "below"), getBool(o, "embedding"));
  model_ = std::move(next);
  return env.Undefined();
}

Napi::Value ModelObject::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = this->model(env);
  Napi::Object out = Napi::Object::New(env);
  out.Set("firstBlock", Napi::Number::New(env, static_cast<double>(model->firstBlock)));
  out.Set("lastBlock", Napi::Number::New(env, static_cast<double>(model->lastBlock)));
  out.Set("embedding", Napi::Boolean::New(env, model->embed.defined()));
  out.Set("head", Napi::Boolean::New(env, model->hasHead()));
  out.Set("dtype", Napi::String::New(env, model->dtype == torch::kFloat ? "f32" : "bf16"));
  out.Set("device", Napi::String::New(env, model->device.str()));
  out.Set("activations", Napi::String::New(env, model->act == torch::kFloat ? "f32" : "bf16"));
  // The kernel each product of a block takes, for every row count asked (B·T rows; default 26).
  std::vector<int64_t> rows{26};
  if (info.Length() > 0 && info[0].IsArray()) {
    auto list = info[0].As<Napi::Array>();
    rows.clear();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const double r = list.Get(i).ToNumber().DoubleValue();
      if (!(r >= 1 && r <= 1e9) || r != static_cast<double>(static_cast<int64_t>(r))) {
        throw Napi::RangeError::New(env, "info(rows): row counts must be positive integers");
      }
      rows.push_back(static_cast<int64_t>(r));
    }
  }
  Napi::Array products = Napi::Array::New(env);
  if (!model->blocks.empty()) {
    const auto& w = model->blocks.front();
    const std::pair<const char*, const torch::Tensor*> named[] = {
        {"q_proj", &w.qProj}, {"k_proj", &w.kProj}, {"v_proj", &w.vProj}, {"o_proj", &w.oProj}, {"gate_proj", &w.gateProj}, {"up_proj", &w.upProj}, {"down_proj", &w.downProj}};
    uint32_t n = 0;
    for (const auto& [name, t] : named) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("name", name);
      p.Set("out", Napi::Number::New(env, static_cast<double>(t->size(0))));
      p.Set("in", Napi::Number::New(env, static_cast<double>(t->size(1))));
      Napi::Array paths = Napi::Array::New(env, rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        const auto path = productPath(model->act, model->device, *t, rows[i]);
        paths.Set(static_cast<uint32_t>(i), productPathName(path, model->act, model->device, *t));
      }
      p.Set("paths", paths);
      products.Set(n++, p);
    }
  }
  Napi::Array rowList = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); ++i) rowList.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(rows[i])));
  out.Set("rows", rowList);
  out.Set("products", products);
  return out;
}

Napi::Value ModelObject::Dispose(const Napi::CallbackInfo& info) {
  model_.reset();
  return info.Env().Undefined();
}

}  // namespace melbo

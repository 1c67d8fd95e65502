// Python (Debian's python3-torch and python3-numpy) as the independent writer and reader of the
// .pt and .npy files in test/formats.test.ts: torch.save / np.save write the inputs of
// `melbo import`, torch.load / np.load read what `melbo export` wrote.

import { execFile } from "node:child_process";
import { PYTHON, checkPythonTorch } from "./python-reference.js";

export { PYTHON };

/** Runs a Python script with arguments; resolves to its stdout. */
export async function python(script: string, args: string[], opts: { torch?: boolean } = {}): Promise<string> {
  if (opts.torch !== false) await checkPythonTorch();
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ["-c", script, ...args], { timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * Writes the test inputs into the folder argv[1] and expected.json there: for each good file the
 * float32 values (as Python floats) of its vectors, row by row.
 */
export const MAKE_FIXTURES = String.raw`
import collections, io, json, os, pickle, random, sys, zipfile
import numpy as np, torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
rng = np.random.default_rng(0)
expected = {}
D = 8

def path(name):
    return os.path.join(out, name)

def rows(t):
    # float32 values of an [n, d] or [d] tensor, row by row (exact: a float64 holds every float32).
    return t.float().reshape(-1, t.shape[-1]).tolist()

def save(name, obj, values):
    torch.save(obj, path(name))
    expected[name] = values

m = torch.randn(3, D)
save("matrix.pt", m, rows(m))
v = torch.randn(D)
save("vector.pt", v, rows(v))
l32 = [torch.randn(D) for _ in range(3)]
save("list-f32.pt", l32, [t.tolist() for t in l32])
l64 = [torch.randn(D, dtype=torch.float64) * 3 for _ in range(3)]
save("list-f64.pt", l64, [t.float().tolist() for t in l64])
lbf = [torch.randn(D).bfloat16() for _ in range(2)]
save("list-bf16.pt", lbf, [t.float().tolist() for t in lbf])
t64 = tuple(torch.randn(2, D, dtype=torch.float64))  # two rows of one storage
save("tuple-f64.pt", t64, [t.float().tolist() for t in t64])
h = torch.randn(2, D).half()
save("matrix-f16.pt", h, rows(h))
tr = torch.randn(D, 3).t()  # not contiguous: strides (1, 3)
save("transposed.pt", tr, rows(tr))
big = torch.randn(5, D)
sl = big[1:3]  # a view at storage offset D into a storage of 5 * D
save("slice.pt", sl, rows(sl))

def rezip(src, dst, edit=lambda name, data: data, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))

# Saved from a GPU: the storage location is "cuda:0" (made by editing the pickle: no GPU here).
def to_cuda(name, data):
    if not name.endswith("data.pkl"):
        return data
    assert b"X\x03\x00\x00\x00cpu" in data
    return data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
rezip(path("matrix.pt"), path("cuda.pt"), to_cuda)
expected["cuda.pt"] = expected["matrix.pt"]

a4 = rng.standard_normal((3, D)).astype("<f4")
np.save(path("f4.npy"), a4)
expected["f4.npy"] = a4.tolist()
a8 = rng.standard_normal((2, D)) * 5
np.save(path("f8.npy"), a8)
expected["f8.npy"] = a8.astype(np.float32).tolist()
a1 = rng.standard_normal(D).astype("<f4")
np.save(path("f4-1d.npy"), a1)
expected["f4-1d.npy"] = [a1.tolist()]
a2 = rng.standard_normal((2, D)).astype("<f2")
np.save(path("f2.npy"), a2)
expected["f2.npy"] = a2.astype(np.float32).tolist()

# Refused inputs.
torch.save([], path("empty.pt"))
torch.save({"v": torch.randn(D)}, path("dict.pt"))
torch.save("vectors", path("string.pt"))
torch.save(torch.arange(D, dtype=torch.int32), path("int.pt"))
torch.save(torch.randn(2, 2, D), path("3d.pt"))
torch.save([torch.randn(D), torch.randn(D + 1)], path("ragged.pt"))
torch.save(m, path("legacy.pt"), _use_new_zipfile_serialization=False)
data = open(path("matrix.pt"), "rb").read()
open(path("truncated.pt"), "wb").write(data[: len(data) // 2])
rezip(path("matrix.pt"), path("deflated.pt"), compression=zipfile.ZIP_DEFLATED)
np.save(path("i4.npy"), np.arange(D, dtype=np.int32))
np.save(path("big-endian.npy"), a4.astype(">f4"))
np.save(path("fortran.npy"), np.asfortranarray(rng.standard_normal((3, D)).astype("<f4")))
np.save(path("3d.npy"), np.zeros((2, 2, D), dtype="<f4"))
data = open(path("f4.npy"), "rb").read()
open(path("truncated.npy"), "wb").write(data[:-4])

# Hand-made pickles in torch.save's zip layout, for the checks libtorch's reader lacks.
def torch_zip(name, pkl, records):
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        for key, raw in records.items():
            z.writestr("archive/data/" + key, raw)
        z.writestr("archive/version", "3\n")

class Storage:
    def __init__(self, numel):
        self.numel = numel

class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)
    def __reduce__(self):
        s, o, size, stride = self.args
        return (torch._utils._rebuild_tensor_v2, (s, o, size, stride, False, collections.OrderedDict()))

def dumps(obj):
    f = io.BytesIO()
    p = pickle.Pickler(f, protocol=2)
    p.persistent_id = lambda o: ("storage", torch.FloatStorage, "0", "cpu", o.numel) if isinstance(o, Storage) else None
    p.dump(obj)
    return f.getvalue()

sixteen = np.arange(16, dtype="<f4").tobytes()
torch_zip("crafted-ok.pt", dumps(Tensor(Storage(16), 0, (2, 8), (8, 1))), {"0": sixteen})
expected["crafted-ok.pt"] = np.arange(16, dtype="<f4").reshape(2, 8).tolist()
# The storage claims 1000 floats, its record holds 16: libtorch would read past the record.
torch_zip("storage-too-small.pt", dumps(Tensor(Storage(1000), 0, (2, 8), (8, 1))), {"0": sixteen})
# The view [4, 8] does not fit in a storage of 16: libtorch would read past the storage.
torch_zip("view-too-large.pt", dumps(Tensor(Storage(16), 0, (4, 8), (8, 1))), {"0": sixteen})
torch_zip("view-offset.pt", dumps(Tensor(Storage(16), 9, (1, 8), (8, 1))), {"0": sixteen})
# Opcodes on an empty stack / without a MARK: undefined behaviour in libtorch's unpickler.
torch_zip("no-mark.pt", b"\x80\x02t.", {})
torch_zip("empty-stack.pt", b"\x80\x02]a.", {})
torch_zip("deep.pt", b"\x80\x02" + b"]" * 200 + b"a" * 199 + b".", {})
torch_zip("self-append.pt", b"\x80\x02]q\x00h\x00a.", {})
torch_zip("missing-record.pt", dumps(Tensor(Storage(16), 0, (2, 8), (8, 1))), {})
class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))
torch_zip("os-system.pt", pickle.dumps(Evil(), protocol=2), {})

# Fuzz: the pickle of a list of three tensors with 1 to 4 bytes changed, or cut short.
base = zipfile.ZipFile(path("list-f32.pt"))
names = base.namelist()
pkl_name = [n for n in names if n.endswith("data.pkl")][0]
pkl = base.read(pkl_name)
os.makedirs(path("fuzz"), exist_ok=True)
r = random.Random(1)
for i in range(int(sys.argv[2])):
    b = bytearray(pkl)
    if i % 5 == 4:
        b = b[: r.randrange(len(b))]
    else:
        for _ in range(r.randint(1, 4)):
            b[r.randrange(len(b))] = r.randrange(256)
    with zipfile.ZipFile(path("fuzz/%03d.pt" % i), "w", zipfile.ZIP_STORED) as z:
        for n in names:
            z.writestr(n, bytes(b) if n == pkl_name else base.read(n))

json.dump(expected, open(path("expected.json"), "w"))
`;

/** Prints {dtype, shape, values} of the tensor torch.load reads from argv[1]. */
export const TORCH_LOAD = String.raw`
import json, sys, torch
t = torch.load(sys.argv[1])
print(json.dumps({"type": type(t).__name__, "dtype": str(t.dtype), "shape": list(t.shape), "values": t.tolist()}))
`;

/** Prints {dtype, shape, fortran, values} of the array np.load reads from argv[1] (no pickles). */
export const NUMPY_LOAD = String.raw`
import json, sys, numpy as np
a = np.load(sys.argv[1], allow_pickle=False)
print(json.dumps({"dtype": a.dtype.str, "shape": list(a.shape), "fortran": bool(a.flags.f_contiguous and not a.flags.c_contiguous), "values": a.tolist()}))
`;

#!/usr/bin/env bash
# bitllm fit end to end: .npy input (float32/float16, C/Fortran order) and model tensors, the
# JSON keys, the reconstruction written with -o against an independent error computation, the
# importance-weighted error, MDBF(l=1, P=1) = DBF, and clean failures on bad input.
set -u
. "$(dirname "$0")/testlib.sh"

# .npy files written here without NumPy: header dict padded to 64 bytes, then the raw values
cat > "$tmp/npy.py" <<'PY'
import random, struct, sys

def write(path, rows, cols, code="<f4", fortran=False, shape=None, seed=1, ver=1):
    rnd = random.Random(seed)
    vals = [rnd.gauss(0, 0.02) * (10 if j % 37 == 0 else 1) for i in range(rows) for j in range(cols)]
    order = [vals[i * cols + j] for j in range(cols) for i in range(rows)] if fortran else vals
    shape = shape if shape is not None else "(%d, %d)" % (rows, cols)
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (code, fortran, shape)
    pre = 10 if ver == 1 else 12
    n = -(-(len(d) + 1 + pre) // 64) * 64 - pre
    head = b"\x93NUMPY" + bytes([ver, 0]) + (struct.pack("<H", n) if ver == 1 else struct.pack("<I", n))
    fmt = {"<f4": "<%df", "<f2": "<%de", ">f4": ">%df", "<f8": "<%dd"}[code]
    with open(path, "wb") as f:
        f.write(head + (d + " " * (n - len(d) - 1) + "\n").encode() + struct.pack(fmt % len(order), *order))

def read(path):
    b = open(path, "rb").read()
    assert b[:6] == b"\x93NUMPY" and b[6] == 1
    n = struct.unpack("<H", b[8:10])[0]
    h = eval(b[10:10 + n].decode())
    assert h["descr"] == "<f4" and not h["fortran_order"] and (10 + n) % 64 == 0
    r, c = h["shape"]
    return r, c, struct.unpack("<%df" % (r * c), b[10 + n:])

if sys.argv[1] == "write":
    a = sys.argv
    write(a[2], int(a[3]), int(a[4]), a[5], a[6] == "F", None if a[7] == "-" else a[7], int(a[8]),
          int(a[9]) if len(a) > 9 else 1)
elif sys.argv[1] == "vec":
    n, v = int(sys.argv[3]), float(sys.argv[4])
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % n
    k = -(-(len(d) + 11) // 64) * 64 - 10
    open(sys.argv[2], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", k) + (d + " " * (k - len(d) - 1) + "\n").encode() + struct.pack("<%df" % n, *[v] * n))
elif sys.argv[1] == "hess":  # n×n: c·I, or c·I with one off-diagonal pair (asym: unequal)
    n, c, asym = int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "asym"
    h = [c if i == j else 0.0 for i in range(n) for j in range(n)]
    h[1] = 0.5 * c
    h[n] = 0.5 * c if not asym else 0.1 * c
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, n)
    k = -(-(len(d) + 11) // 64) * 64 - 10
    open(sys.argv[2], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", k) + (d + " " * (k - len(d) - 1) + "\n").encode() + struct.pack("<%df" % (n * n), *h))
elif sys.argv[1] == "relerr":  # ‖W − Ŵ‖/‖W‖ in double from two files, W possibly float16
    w = read(sys.argv[2])[2] if sys.argv[4] == "f4" else None
    r, c, y = read(sys.argv[3])
    if w is None:
        b = open(sys.argv[2], "rb").read(); n = struct.unpack("<H", b[8:10])[0]
        w = struct.unpack("<%de" % (r * c), b[10 + n:])
    num = sum((a - b) ** 2 for a, b in zip(w, y)); den = sum(a * a for a in w)
    print((num / den) ** 0.5)
PY
py() { python3 "$tmp/npy.py" "$@"; }
jget() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

py write "$tmp/w.npy" 48 80 "<f4" C - 1
$BIN fit "$tmp/w.npy" --method dbf --bpw 1.5 -o "$tmp/what.npy" --json >"$tmp/f.json" 2>"$tmp/f.err"
check "fit .npy --json: rel_err bpw iters seconds cpu_seconds" 'python3 -c "
import json,sys;d=json.load(open(sys.argv[1]))
assert all(k in d for k in (\"rel_err\",\"bpw\",\"iters\",\"seconds\",\"cpu_seconds\",\"wrel_err\",\"objective\"))
assert 0 < d[\"rel_err\"] < 1 and 1.4 < d[\"bpw\"] <= 1.5 and d[\"iters\"] == len(d[\"objective\"]) > 0
assert d[\"shape\"] == [48, 80] and d[\"cpu_seconds\"] > 0
" "$tmp/f.json"'
check "fit prints the stored bpw and iterations" 'grep -q "bpw 1\.[0-9]*  rel_err" "$tmp/f.err" && grep -q "iterations" "$tmp/f.err"'
rel=$(jget "$tmp/f.json" rel_err)
indep=$(py relerr "$tmp/w.npy" "$tmp/what.npy" f4)
check "-o Ŵ: rel_err recomputed from the files ($indep vs $rel)" 'python3 -c "import sys;a,b=map(float,sys.argv[1:]);assert abs(a-b)<=1e-6*b" "$indep" "$rel"'

# OpenBLAS's kernels: with OPENBLAS_CORETYPE unset, a CPU with AVX2 and FMA runs vector kernels
# (bitllm re-executes itself when a DYNAMIC_ARCH OpenBLAS fell back to its generic ones, and says
# which it had picked); a value the user set is kept as it is
core=$(jget "$tmp/f.json" blas_core)
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  check "vector BLAS kernels on an AVX2 CPU (core $core)" 'case "$core" in Haswell|Zen|SkylakeX|Cooperlake|SapphireRapids) true;; *) false;; esac'
else
  echo "SKIP vector BLAS kernels: no AVX2/FMA here, or OPENBLAS_CORETYPE set by the environment"
fi
OPENBLAS_CORETYPE=Prescott $BIN fit "$tmp/w.npy" --method dbf --bpw 1.5 --json >"$tmp/fp.json" 2>/dev/null
check "OPENBLAS_CORETYPE set by the user is kept" 'python3 -c "
import json,sys;d=json.load(open(sys.argv[1]))
assert d[\"blas_core\"] == \"Prescott\" and \"blas_fallback\" not in d, d.get(\"blas_core\")
" "$tmp/fp.json"'

# the same values as float16, and in Fortran order, and with a version 2.0 header
py write "$tmp/w16.npy" 48 80 "<f2" C - 1
$BIN fit "$tmp/w16.npy" --method rtn2 --group 64 -o "$tmp/what16.npy" --json >"$tmp/f16.json" 2>/dev/null
indep=$(py relerr "$tmp/w16.npy" "$tmp/what16.npy" f2)
check "float16 .npy input ($indep vs $(jget "$tmp/f16.json" rel_err))" 'python3 -c "import sys;a,b=map(float,sys.argv[1:]);assert abs(a-b)<=1e-6*b" "$indep" "$(jget "$tmp/f16.json" rel_err)"'
py write "$tmp/wF.npy" 48 80 "<f4" F - 1
py write "$tmp/wv2.npy" 48 80 "<f4" C - 1 2
$BIN fit "$tmp/w.npy" --method onebit -o "$tmp/o1.npy" >/dev/null 2>&1
$BIN fit "$tmp/wF.npy" --method onebit -o "$tmp/o2.npy" >/dev/null 2>&1
$BIN fit "$tmp/wv2.npy" --method onebit -o "$tmp/o3.npy" >/dev/null 2>&1
check "Fortran order and a 2.0 header read as the same matrix" 'cmp -s "$tmp/o1.npy" "$tmp/o2.npy" && cmp -s "$tmp/o1.npy" "$tmp/o3.npy"'

# the thread count changes nothing (large products are cut into the same blocks on 1 or 2 threads)
py write "$tmp/wbig.npy" 300 520 "<f4" C - 3
$BIN fit "$tmp/wbig.npy" --method dbf --bpw 1.0 --iters 6 --threads 1 -o "$tmp/t1.npy" >/dev/null 2>&1
$BIN fit "$tmp/wbig.npy" --method dbf --bpw 1.0 --iters 6 --threads 2 -o "$tmp/t2.npy" >/dev/null 2>&1
check "fit --threads 1 and 2 give the same reconstruction" '[ -s "$tmp/t1.npy" ] && cmp -s "$tmp/t1.npy" "$tmp/t2.npy"'
# middle dimension 665, k²·1600 ≥ 2^29: the F-step's Gram matrix is cut into block rows and the
# G-step's triangular solves into column blocks, and the two factorizations run side by side, in
# the same blocks at any thread count
py write "$tmp/wgram.npy" 1200 1600 "<f4" C - 4
$BIN fit "$tmp/wgram.npy" --method dbf --bpw 1.0 --iters 1 --threads 1 -o "$tmp/g1.npy" >/dev/null 2>&1
$BIN fit "$tmp/wgram.npy" --method dbf --bpw 1.0 --iters 1 --threads 2 -o "$tmp/g2.npy" >/dev/null 2>&1
check "blocked Grams and solves: --threads 1 and 2 give the same reconstruction" '[ -s "$tmp/g1.npy" ] && cmp -s "$tmp/g1.npy" "$tmp/g2.npy"'

# importance: all ones weighs nothing; a skewed vector changes the weighted error
py vec "$tmp/ones.npy" 80 1.0
$BIN fit "$tmp/w.npy" --bpw 1.5 --iters 20 --importance "$tmp/ones.npy" --json >"$tmp/i1.json" 2>/dev/null
check "all-ones importance: wrel_err = rel_err" 'python3 -c "import json,sys;d=json.load(open(sys.argv[1]));assert abs(d[\"wrel_err\"]-d[\"rel_err\"])<1e-12" "$tmp/i1.json"'

# an input covariance H (--hessian): the reported weighted error is the output error under H;
# onebit/dbf fit for it (tests/test_fits_hessian.c has the quality checks)
py hess "$tmp/h.npy" 80 2.0 sym
$BIN fit "$tmp/w.npy" --method onebit --hessian "$tmp/h.npy" --json >"$tmp/ho.json" 2>"$tmp/ho.err"
check "fit --hessian: onebit reports the H-weighted error" 'grep -q "H-weighted rel_err" "$tmp/ho.err" && python3 -c "import json,sys;d=json.load(open(sys.argv[1]));assert 0<d[\"wrel_err\"]<1 and d[\"wrel_err\"]!=d[\"rel_err\"]" "$tmp/ho.json"'
$BIN fit "$tmp/w.npy" --method dbf --bpw 1.5 --iters 10 --hessian "$tmp/h.npy" --hessian-rank 4 --json >"$tmp/hd.json" 2>/dev/null
check "fit --hessian --hessian-rank 4 (dbf)" 'python3 -c "import json,sys;d=json.load(open(sys.argv[1]));assert 0<d[\"wrel_err\"]<1" "$tmp/hd.json"'

# a model tensor; MDBF with one envelope and one path is DBF exactly
if [ -e "$S/stories260K.gguf" ]; then
  T=model.layers.1.mlp.down_proj.weight
  $BIN fit "$S/stories260K.gguf" --tensor $T --method dbf --iters 30 --json >"$tmp/d.json" 2>/dev/null
  $BIN fit "$S/stories260K.gguf" --tensor $T --method mdbf --iters 30 --json >"$tmp/m.json" 2>/dev/null
  check "fit MODEL --tensor: mdbf(l=1,P=1) = dbf" 'python3 -c "
import json,sys;a=json.load(open(sys.argv[1]));b=json.load(open(sys.argv[2]))
assert a[\"shape\"]==[64,172] and a[\"rel_err\"]==b[\"rel_err\"] and a[\"bpw\"]==b[\"bpw\"] and a[\"mid\"]==b[\"mid\"]
" "$tmp/d.json" "$tmp/m.json"'
  $BIN fit "$S/hf" --tokenizer "$S/tok512.bin" --tensor $T --method dbf --iters 30 --json >"$tmp/h.json" 2>/dev/null
  check "the same tensor from the HF form" 'python3 -c "import json,sys;assert json.load(open(sys.argv[1]))[\"rel_err\"]==json.load(open(sys.argv[2]))[\"rel_err\"]" "$tmp/d.json" "$tmp/h.json"'
  $BIN fit "$S/stories260K.gguf" --tensor $T --method dbf --bpw 4 --json >"$tmp/wide.json" 2>/dev/null
  check "4.0 bpw on 64×172: middle above min(m, n), stores ~4 bpw" 'python3 -c "import json,sys;d=json.load(open(sys.argv[1]));assert d[\"mid\"]>64 and 3.95<d[\"bpw\"]<=4.0 and d[\"converged_paths\"]==1" "$tmp/wide.json"'
fi

# quantize reports the same per layer: stored bpw, iterations and the objective trajectory
if [ -e "$G" ]; then
  $BIN quantize "$G" -m dbf --iters 5 -o "$tmp/q" --json >"$tmp/q.json" 2>"$tmp/q.err"
  check "quantize --json: per-layer bpw, iters, objective" 'python3 -c "
import json,sys;d=json.load(open(sys.argv[1]));L=d[\"layers\"]
assert len(L)==35 and all(l[\"iters\"]==5 and len(l[\"objective\"])==5 and 1.3<l[\"bpw\"]<1.8 and l[\"mid\"]>0 for l in L)
assert abs(sum(l[\"bpw\"]*l[\"shape\"][0]*l[\"shape\"][1] for l in L)/sum(l[\"shape\"][0]*l[\"shape\"][1] for l in L)-d[\"bpw_layers\"])<1e-9
" "$tmp/q.json"'
  check "quantize progress shows bpw and iterations" 'grep -q "bpw 1\.[0-9]*  rel_err [0-9.]*  5 it" "$tmp/q.err"'
fi

# failures: clear message, non-zero exit, no crash, nothing on stdout
expect_fail "missing file" "cannot open" $BIN fit /nonexistent/w.npy
head -c 300 "$tmp/w.npy" > "$tmp/trunc.npy"
expect_fail "truncated .npy" "data is 172 bytes, the shape needs 15360" $BIN fit "$tmp/trunc.npy"
py write "$tmp/big.npy" 4 5 ">f4" C - 1
expect_fail "big-endian .npy" "not little-endian" $BIN fit "$tmp/big.npy"
py write "$tmp/w3.npy" 4 5 "<f4" C "(2, 2, 5)" 1
expect_fail "3-D .npy" "expected a 2-D array" $BIN fit "$tmp/w3.npy"
py vec "$tmp/short.npy" 79 1.0
expect_fail "importance of the wrong length" "vector of 80 values" $BIN fit "$tmp/w.npy" --importance "$tmp/short.npy"
py vec "$tmp/neg.npy" 80 -1.0
expect_fail "negative importance" "finite and >= 0" $BIN fit "$tmp/w.npy" --importance "$tmp/neg.npy"
expect_fail "H of the wrong shape" "H must be a 80 x 80 matrix" $BIN fit "$tmp/w.npy" --hessian "$tmp/ones.npy"
py hess "$tmp/hasym.npy" 80 2.0 asym
expect_fail "H not symmetric" "H is not symmetric" $BIN fit "$tmp/w.npy" --hessian "$tmp/hasym.npy"
expect_usage "--hessian with --importance" "give one" $BIN fit "$tmp/w.npy" --hessian "$tmp/h.npy" --importance "$tmp/ones.npy"
expect_usage "--hessian-rank with onebit" "--hessian-rank is not used by -m onebit" $BIN fit "$tmp/w.npy" --method onebit --hessian "$tmp/h.npy" --hessian-rank 4
cp "$tmp/h.npy" "$tmp/hkeep.npy"
expect_fail "-o over the H file" "hkeep.npy" $BIN fit "$tmp/w.npy" --hessian "$tmp/hkeep.npy" -o "$tmp/hkeep.npy"
cp "$tmp/w.npy" "$tmp/keep.npy"
expect_fail "-o over the input" "keep.npy" $BIN fit "$tmp/keep.npy" -o "$tmp/keep.npy"
check "the input is untouched" 'cmp -s "$tmp/w.npy" "$tmp/keep.npy"'
expect_usage "unknown method" "unknown method 'dbx'" $BIN fit "$tmp/w.npy" --method dbx
expect_usage "--iters with a method that does not iterate" "--iters is not used by -m rtn1" $BIN fit "$tmp/w.npy" --method rtn1 --iters 5
expect_usage "--mid and --bpw together" "give one" $BIN fit "$tmp/w.npy" --mid 10 --bpw 1.0
expect_usage "--tol out of range" "--tol" $BIN fit "$tmp/w.npy" --tol 0
expect_fail "infeasible target" "below the 4.4000 bpw" $BIN fit "$tmp/w.npy" --method mdbf --envelope-rank 4 --paths 2 --bpw 1.0
[ -e "$G" ] && expect_fail "unknown tensor" "no tensor 'model.layers.9.mlp.up_proj.weight'" $BIN fit "$G" --tensor model.layers.9.mlp.up_proj.weight
expect_fail ".npy with --tensor" "names a tensor of a MODEL" $BIN fit "$tmp/w.npy" --tensor x
$BIN fit --help >/dev/null && ok "fit --help" || bad "fit --help"

finish

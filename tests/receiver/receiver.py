#!/usr/bin/python3
"""A stand-in for the fleet backends tailprof pushes to, for its tests.

No Pyroscope server or OpenTelemetry collector can be installed here, so
this receiver answers their endpoints and decodes each push with decoders
independent of tailprof's: Python's protobuf package with message classes
compiled (protoc) from the protos, and the pprof bodies left to the real Go
pprof tool (it saves each one for the test to read with it).

    /usr/bin/python3 receiver.py --port PORT --out DIR [--otlp-protos DIR]

Endpoints:
  POST /push.v1.PusherService/Push   Pyroscope's Connect push (application/proto)
  POST /v1development/profiles       OTLP profiles over HTTP (application/x-protobuf), decoded with classes
                                     compiled from the published opentelemetry-proto files in --otlp-protos
  POST /control                      {"mode": "up"|"down"|"reject", "retry_after": S}
  GET  /requests                     every request seen, as JSON

Each push is logged in DIR/requests.jsonl (headers, series, labels, sizes,
limits checked) and each raw profile saved as DIR/profiles/NNNNNN.pb.gz.
"""

import argparse
import gzip
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))

MAX_PROFILE_BYTES = 4 << 20
MAX_LABELS = 30


OTLP_PROTOS = [
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/profiles/v1development/profiles.proto",
    "opentelemetry/proto/collector/profiles/v1development/profiles_service.proto",
]


def compile_protos(otlp_dir):
    out = tempfile.mkdtemp(prefix="tailprof-receiver-")
    proto_dir = os.path.join(HERE, "proto")
    subprocess.run(
        ["protoc", f"--proto_path={proto_dir}", f"--python_out={out}", "pyroscope/push.proto"],
        check=True,
    )
    if otlp_dir:
        subprocess.run(["protoc", f"--proto_path={otlp_dir}", f"--python_out={out}"] + OTLP_PROTOS, check=True)
    sys.path.insert(0, out)
    from pyroscope import push_pb2  # noqa: E402

    otlp = None
    if otlp_dir:
        from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as otlp  # noqa: E402
    return push_pb2, otlp


class State:
    def __init__(self, out):
        self.out = out
        self.mode = "up"
        self.retry_after = None
        self.requests = []
        self.profiles = 0
        self.lock = threading.Lock()
        os.makedirs(os.path.join(out, "profiles"), exist_ok=True)


def any_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def check_otlp(req):
    """The request's resources and profiles as JSON, and what breaks the protocol's rules."""
    d = req.dictionary
    problems = []
    st = list(d.string_table)
    if not st or st[0] != "":
        problems.append("string_table[0] is not the empty string")
    for name in ["mapping_table", "location_table", "function_table", "link_table", "attribute_table", "stack_table"]:
        table = getattr(d, name)
        if not len(table) or table[0].ByteSize() != 0:
            problems.append(f"{name}[0] is not the zero value")

    def s(i):
        if 0 <= i < len(st):
            return st[i]
        problems.append(f"string index {i} out of range")
        return ""

    def attr(i):
        if not (0 <= i < len(d.attribute_table)):
            problems.append(f"attribute index {i} out of range")
            return ("", None)
        a = d.attribute_table[i]
        return (s(a.key_strindex), any_value(a.value))

    resources = []
    for rp in req.resource_profiles:
        rattrs = {kv.key: any_value(kv.value) for kv in rp.resource.attributes}
        profiles = []
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                total = 0
                timed = 0
                all_stamps = []
                keys = set()
                bad = set()
                start, end = p.time_unix_nano, p.time_unix_nano + p.duration_nano
                for smp in p.samples:
                    stamps = list(smp.timestamps_unix_nano)
                    all_stamps.extend(stamps)
                    if stamps:
                        # One value per timestamp, each inside the profile's range.
                        timed += 1
                        if len(smp.values) != len(stamps):
                            problems.append(f"a sample has {len(stamps)} timestamps but {len(smp.values)} values")
                        if any(not (start <= t < end) for t in stamps):
                            problems.append("a sample timestamp lies outside [time_unix_nano, +duration_nano)")
                        if any(v <= 0 for v in smp.values):
                            problems.append("a timed sample has a value below 1")
                    elif len(smp.values) != 1:
                        problems.append(f"a sample has {len(smp.values)} values")
                    total += sum(smp.values)
                    for ai in smp.attribute_indices:
                        keys.add(attr(ai)[0])
                    if not (0 <= smp.stack_index < len(d.stack_table)):
                        problems.append(f"stack index {smp.stack_index} out of range")
                        continue
                    for li in d.stack_table[smp.stack_index].location_indices:
                        if not (0 < li < len(d.location_table)):
                            problems.append(f"location index {li} out of range")
                            continue
                        loc = d.location_table[li]
                        if not (0 <= loc.mapping_index < len(d.mapping_table)):
                            problems.append(f"mapping index {loc.mapping_index} out of range")
                        for line in loc.lines:
                            if not (0 < line.function_index < len(d.function_table)):
                                problems.append(f"function index {line.function_index} out of range")
                                continue
                            name = s(d.function_table[line.function_index].name_strindex)
                            if name.endswith(("_[k]", "_[i]", "_[j]")):
                                bad.add(name)
                profiles.append({
                    "type": s(p.sample_type.type_strindex),
                    "unit": s(p.sample_type.unit_strindex),
                    "period_type": s(p.period_type.type_strindex) if p.HasField("period_type") else None,
                    "period": p.period,
                    "time_unix_nano": p.time_unix_nano,
                    "duration_nano": p.duration_nano,
                    "samples": len(p.samples),
                    "timed_samples": timed,
                    "stamp_span": (max(all_stamps) - min(all_stamps)) if all_stamps else 0,
                    "total": total,
                    "attribute_keys": sorted(keys),
                    "suffixed_names": sorted(bad),
                })
        scope = rp.scope_profiles[0].scope.name if rp.scope_profiles else None
        resources.append({"attributes": rattrs, "scope": scope, "profiles": profiles})
    return resources, sorted(set(problems))


def handler_for(state, push_pb2, otlp):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body=b"", kind="application/json", headers=None):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(n)
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                data = gzip.decompress(data)
            return data

        def do_GET(self):
            if self.path == "/requests":
                with state.lock:
                    return self.reply(200, json.dumps(state.requests).encode())
            self.reply(404, b'{"error":"no such endpoint"}')

        def do_POST(self):
            data = self.body()
            if self.path == "/control":
                c = json.loads(data or b"{}")
                with state.lock:
                    state.mode = c.get("mode", state.mode)
                    state.retry_after = c.get("retry_after")
                return self.reply(200, b"{}")
            if self.path == "/push.v1.PusherService/Push":
                return self.pyroscope(data)
            if self.path == "/v1development/profiles" and otlp is not None:
                return self.otlp(data)
            self.reply(404, b'{"error":"no such endpoint"}')

        def refused(self, record):
            """Answers as the mode says; True when the request was refused."""
            with state.lock:
                mode, retry_after = state.mode, state.retry_after
            if mode == "up":
                return False
            record["answered"] = 503 if mode == "down" else 400
            self.keep(record)
            headers = {"Retry-After": str(retry_after)} if (mode == "down" and retry_after) else {}
            code = record["answered"]
            msg = {"code": "unavailable" if code == 503 else "invalid_argument", "message": f"receiver is {mode}"}
            self.reply(code, json.dumps(msg).encode(), headers=headers)
            return True

        def log(self, record):
            with open(os.path.join(state.out, "requests.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")

        def start(self, endpoint, data):
            """A request's record: what it came with."""
            return {
                "endpoint": endpoint,
                "content_type": self.headers.get("Content-Type"),
                "connect_protocol_version": self.headers.get("Connect-Protocol-Version"),
                "authorization": self.headers.get("Authorization"),
                "tenant": self.headers.get("X-Scope-OrgID"),
                "content_encoding": self.headers.get("Content-Encoding"),
                "bytes": len(data),
            }

        def keep(self, record):
            with state.lock:
                state.requests.append(record)
                self.log(record)

        def malformed(self, record, what, e):
            record["error"] = f"{what} does not parse: {e}"
            self.keep(record)
            self.reply(400, json.dumps({"code": "invalid_argument", "message": record["error"]}).encode())

        def otlp(self, data):
            record = self.start("otlp", data)
            if self.refused(record):
                return
            req = otlp.ExportProfilesServiceRequest()
            try:
                req.ParseFromString(data)
            except Exception as e:  # a malformed request is the test's failure
                return self.malformed(record, "the request", e)
            resources, problems = check_otlp(req)
            record.update({"answered": 200, "resources": resources, "problems": problems})
            self.keep(record)
            self.reply(200, otlp.ExportProfilesServiceResponse().SerializeToString(), kind="application/x-protobuf")

        def pyroscope(self, data):
            record = self.start("pyroscope", data)
            if self.refused(record):
                return
            req = push_pb2.PushRequest()
            try:
                req.ParseFromString(data)
            except Exception as e:  # a malformed envelope is the test's failure
                return self.malformed(record, "the envelope", e)
            series = []
            problems = []
            for s in req.series:
                labels = {l.name: l.value for l in s.labels}
                if len(s.labels) > MAX_LABELS:
                    problems.append(f"{len(s.labels)} labels in a series")
                if len(labels) != len(s.labels):
                    problems.append("a label name repeats")
                samples = []
                for raw in s.samples:
                    try:
                        plain = gzip.decompress(raw.raw_profile)
                    except Exception as e:
                        problems.append(f"a raw profile is not gzip: {e}")
                        continue
                    if len(plain) > MAX_PROFILE_BYTES:
                        problems.append(f"a profile of {len(plain)} bytes uncompressed")
                    with state.lock:
                        state.profiles += 1
                        n = state.profiles
                    path = os.path.join(state.out, "profiles", f"{n:06d}.pb.gz")
                    with open(path, "wb") as f:
                        f.write(raw.raw_profile)
                    samples.append({"id": raw.ID, "file": path, "gzip_bytes": len(raw.raw_profile), "bytes": len(plain)})
                series.append({"labels": labels, "samples": samples})
            record.update({"answered": 200, "series": series, "problems": problems})
            self.keep(record)
            self.reply(200, push_pb2.PushResponse().SerializeToString(), kind="application/proto")

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--otlp-protos", help="the root of the opentelemetry-proto files (opentelemetry/proto/...)")
    args = ap.parse_args()
    push_pb2, otlp = compile_protos(args.otlp_protos)
    state = State(args.out)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(state, push_pb2, otlp))
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

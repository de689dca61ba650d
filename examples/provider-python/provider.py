#!/usr/bin/env python3
"""A DSO secret provider in Python, written from PROTOCOL.md of @dso/provider-sdk alone.

Standard library only. It serves secrets from a JSON file (re-read on every call, watched for
changes) or from a mapping in its configuration:

    config: { file: /etc/dso/secrets.json }             # or
    config: { secrets: { app/db: hunter2 } }

Each entry maps a path to a UTF-8 text, or to {"base64": "...", "version": "7"} for bytes and
an explicit version. The protocol: one JSON-RPC 2.0 message per line on stdin/stdout, logs on
stderr, the configuration only in `initialize`, values only in `resolve` results.
"""

import base64
import json
import os
import sys
import threading

PROTOCOL_VERSION = 1
SDK_API_VERSION = 1
TYPE = "pyfile"
MAX_LINE_BYTES = 4 * 1024 * 1024  # what this child reads: at least 1 MiB (PROTOCOL.md § 1)
MAX_PATH_CHARS = 1024
CAPABILITIES = {"list": True, "watch": True, "probe": True, "health": True}
CONFIG_KEYS = {"file", "secrets", "pollIntervalMs"}

_write_lock = threading.Lock()


def send(message):
    """Writes one message as one compact line; stdout carries nothing else."""
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def log(level, message, **fields):
    """A `log` notification: a short phrase, facts in fields, never a value."""
    send({"jsonrpc": "2.0", "method": "log",
          "params": {"level": level, "message": message, "fields": fields}})


class ProviderFailure(Exception):
    """A failed call: a stable code, whether a retry may help, a message without values."""

    def __init__(self, code, message, retryable=False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable


def error_object(code, message, retryable=False, rpc_code=-32000):
    return {"code": rpc_code, "message": message[:2048],
            "data": {"code": code, "retryable": retryable}}


def check_config(config):
    """Every problem by field path, never by value (PROTOCOL.md § 3)."""
    if not isinstance(config, dict):
        return ["config: expected a mapping with `file` or `secrets`"]
    problems = [f"{key}: unknown key (expected file, secrets, pollIntervalMs)"
                for key in sorted(config) if key not in CONFIG_KEYS]
    if ("file" in config) == ("secrets" in config):
        problems.append("file, secrets: give exactly one of them")
    if "file" in config and not (isinstance(config["file"], str)
                                 and os.path.isabs(config["file"])):
        problems.append("file: must be an absolute path to a JSON file")
    if "secrets" in config:
        if not isinstance(config["secrets"], dict):
            problems.append("secrets: must be a mapping of path to value")
        else:
            problems.extend(f"secrets.{path}: {problem}"
                            for path, entry in config["secrets"].items()
                            for problem in check_entry(entry))
    interval = config.get("pollIntervalMs", 500)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 50:
        problems.append("pollIntervalMs: must be a whole number of milliseconds, at least 50")
    return problems


def check_entry(entry):
    if isinstance(entry, str):
        return []
    if isinstance(entry, dict) and isinstance(entry.get("base64"), str) and \
            isinstance(entry.get("version", ""), str) and set(entry) <= {"base64", "version"}:
        try:
            base64.b64decode(entry["base64"], validate=True)
            return []
        except ValueError:
            return ["base64: is not standard base64"]
    return ['must be a text, or {"base64": "...", "version": "..."}']


class Store:
    """The secrets, from the file (read at each call) or from the configuration."""

    def __init__(self, config):
        self.file = config.get("file")
        self.secrets = config.get("secrets")
        self.poll_seconds = config.get("pollIntervalMs", 500) / 1000

    def load(self):
        """{path: (bytes, version)}."""
        if self.file is None:
            return {path: decode(entry, "1") for path, entry in self.secrets.items()}
        try:
            with open(self.file, "rb") as handle:
                stamp = str(os.fstat(handle.fileno()).st_mtime_ns)
                data = json.loads(handle.read())
        except FileNotFoundError:
            raise ProviderFailure("DSO_PROVIDER_UNAVAILABLE",
                                  "the secrets file (config.file) does not exist", True)
        except (OSError, ValueError) as error:
            raise ProviderFailure("DSO_PROVIDER_UNAVAILABLE",
                                  f"the secrets file (config.file) cannot be read as JSON "
                                  f"({type(error).__name__}): fix it", True)
        if not isinstance(data, dict) or any(check_entry(entry) for entry in data.values()):
            raise ProviderFailure("DSO_PROVIDER_UNAVAILABLE",
                                  "the secrets file (config.file) is not a mapping of path to "
                                  'text or {"base64", "version"}: fix it', True)
        # A plain text has no version of its own: the file's modification time stands for it.
        return {path: decode(entry, "m" + stamp) for path, entry in data.items()}


def decode(entry, default_version):
    if isinstance(entry, str):
        return entry.encode("utf-8"), default_version
    return base64.b64decode(entry["base64"]), entry.get("version", default_version)


class Provider:
    def __init__(self, name, store, host_max_bytes):
        self.name = name
        self.store = store
        self.host_max_bytes = host_max_bytes
        self.watches = {}  # subscription -> {"paths": [...], "versions": {path: version}}
        self.watch_requests = {}  # the watch request's id -> subscription
        self.next_subscription = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        threading.Thread(target=self.poll_watches, daemon=True).start()

    def find(self, path, version=None):
        if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH_CHARS:
            raise ProviderFailure("DSO_PROVIDER_NOT_FOUND",
                                  f"provider {self.name}: a path must be 1 to {MAX_PATH_CHARS} characters")
        found = self.store.load().get(path)
        if found is None:
            raise ProviderFailure("DSO_PROVIDER_NOT_FOUND", f"no secret at {path}")
        if version is not None and version != found[1]:
            raise ProviderFailure("DSO_PROVIDER_NOT_FOUND",
                                  f"no version {version} of {path}: this store keeps only the current one")
        return found

    def resolve(self, params):
        value, version = self.find(params.get("path"), params.get("version"))
        needed = 4 * -(-len(value) // 3) + 80
        if needed > self.host_max_bytes:
            raise ProviderFailure(
                "DSO_PROVIDER_TOO_LARGE",
                f"secret {params['path']} from provider {self.name} is {len(value)} bytes, a "
                f"{needed}-byte message over the host's limit of {self.host_max_bytes} bytes: "
                f"raise providers.{self.name}.maxMessageBytes in dso.yaml")
        return {"value": {"base64": base64.b64encode(value).decode("ascii")}, "version": version}

    def list(self, params):
        prefix = params.get("prefix") or ""
        return {"paths": sorted(path for path in self.store.load() if path.startswith(prefix))}

    def probe(self, params):
        return {"version": self.find(params.get("path"), params.get("version"))[1]}

    def health(self, _params):
        try:
            count = len(self.store.load())
        except ProviderFailure as failure:
            return {"ok": False, "detail": str(failure)}
        return {"ok": True, "detail": f"{count} secrets"}

    def watch(self, params, request_id):
        paths = params.get("paths")
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            raise ProviderFailure("DSO_PROVIDER_INTERNAL", "watch: paths must be a list of strings")
        with self.lock:
            self.next_subscription += 1
            subscription = f"w{self.next_subscription}"
            # Inactive until its answer is written: no change may come before it (§ 5.5).
            self.watches[subscription] = {"paths": paths, "versions": self.versions(paths),
                                          "active": False}
            self.watch_requests[request_id] = subscription
        return {"subscription": subscription}

    def activate(self, subscription):
        with self.lock:
            if subscription in self.watches:
                self.watches[subscription]["active"] = True

    def unwatch(self, subscription):
        with self.lock:
            self.watches.pop(subscription, None)
            for request_id, known in list(self.watch_requests.items()):
                if known == subscription:
                    del self.watch_requests[request_id]

    def versions(self, paths):
        try:
            loaded = self.store.load()
        except ProviderFailure:
            return None
        return {path: loaded[path][1] for path in paths if path in loaded}

    def poll_watches(self):
        """Sends watch/change for every watched path whose version moved."""
        while not self.stopped.wait(self.store.poll_seconds):
            with self.lock:
                for subscription, state in list(self.watches.items()):
                    if not state["active"]:
                        continue
                    now = self.versions(state["paths"])
                    if now is None:
                        continue  # the file is unreadable for now: health says so
                    before = state["versions"] or {}
                    for path, version in now.items():
                        if before.get(path) != version:
                            send({"jsonrpc": "2.0", "method": "watch/change",
                                  "params": {"subscription": subscription, "path": path,
                                             "version": version}})
                    state["versions"] = now


def initialize(params):
    """The handshake: versions, configuration, then the capabilities (PROTOCOL.md § 3)."""
    if params.get("protocolVersion") != PROTOCOL_VERSION:
        raise ProviderFailure("DSO_PROVIDER_INVALID_CONFIG",
                              f"protocol version {params.get('protocolVersion')} is not supported: "
                              f"this provider child speaks {PROTOCOL_VERSION}; upgrade it or DSO")
    if SDK_API_VERSION not in (params.get("sdkApiVersions") or []):
        raise ProviderFailure("DSO_PROVIDER_INVALID_CONFIG",
                              f"provider type {TYPE} was built for provider SDK API version "
                              f"{SDK_API_VERSION}; the host supports "
                              f"{params.get('sdkApiVersions')}: install a release built for it, or upgrade DSO")
    name = params.get("name") or TYPE
    config = params.get("config")
    problems = check_config(config)
    if problems:
        raise ProviderFailure("DSO_PROVIDER_INVALID_CONFIG",
                              f"invalid configuration for provider {name} (type {TYPE}): "
                              + "; ".join(problems))
    return Provider(name, Store(config), params.get("maxMessageBytes", 1_048_576))


METHODS = {"resolve", "list", "probe", "health", "watch", "unwatch"}


def main():
    provider = None
    for raw in sys.stdin.buffer:  # the end of stdin means shutdown: leave the loop, exit 0
        if len(raw) > MAX_LINE_BYTES:
            continue
        line = raw.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            send({"jsonrpc": "2.0", "id": None,
                  "error": error_object("DSO_PROVIDER_INTERNAL", "a line is not JSON",
                                        rpc_code=-32700)})
            continue
        if not isinstance(message, dict):
            continue
        method, request_id = message.get("method"), message.get("id")
        params = message.get("params") or {}
        if request_id is None:  # a notification
            if method == "$/cancelRequest" and provider is not None:
                # Answers are written at once here, so only a watch can still be cancelled.
                subscription = provider.watch_requests.get(params.get("id"))
                if subscription is not None:
                    provider.unwatch(subscription)
            continue
        try:
            if method == "initialize":
                provider = initialize(params)
                result = {"protocolVersion": PROTOCOL_VERSION, "sdkApiVersion": SDK_API_VERSION,
                          "type": TYPE, "capabilities": CAPABILITIES,
                          "maxMessageBytes": MAX_LINE_BYTES}
            elif method == "shutdown":
                if provider is not None:
                    provider.stopped.set()
                send({"jsonrpc": "2.0", "id": request_id, "result": None})
                return 0
            elif provider is None:
                send({"jsonrpc": "2.0", "id": request_id, "error": error_object(
                    "DSO_PROVIDER_INTERNAL", "initialize first", rpc_code=-32002)})
                continue
            elif method == "unwatch":
                provider.unwatch(params.get("subscription"))
                result = None
            elif method == "watch":
                result = provider.watch(params, request_id)
            elif method in METHODS:
                result = getattr(provider, method)(params)
            else:
                send({"jsonrpc": "2.0", "id": request_id, "error": error_object(
                    "DSO_PROVIDER_INTERNAL", f"method {method} not found", rpc_code=-32601)})
                continue
            send({"jsonrpc": "2.0", "id": request_id, "result": result})
            if method == "watch":
                provider.activate(result["subscription"])
        except ProviderFailure as failure:
            send({"jsonrpc": "2.0", "id": request_id,
                  "error": error_object(failure.code, str(failure), failure.retryable)})
            if method == "initialize":
                return 1
        except Exception as error:  # a bug: its class only, the text may quote anything
            print(f"provider {TYPE}: {method} failed with {type(error).__name__}", file=sys.stderr)
            send({"jsonrpc": "2.0", "id": request_id, "error": error_object(
                "DSO_PROVIDER_INTERNAL", f"{method} failed ({type(error).__name__})")})
    if provider is not None:
        provider.stopped.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())

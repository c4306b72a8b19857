"""The values of the recipes' parameters that ``fmmloopy tune`` found fastest on a device,
stored as data in the cache directory and used by default.

One JSON file per device (``<cache>/tuning/<digest>.json``), named by a digest of the device's
fingerprint (:func:`~fmmloopy.execution.kernel_cache.device_fingerprint`: platform, name,
driver, vector widths). It holds, per recipe and operator, the values of the recipe's
parameters (``{"cpu/m2l": {"pair_tile": 6}}``), the sha256 of each tuned recipe's source
file when it was tuned, the rates measured on the tuned FMM (what a P2P pair costs in matvec
flops there, which the ``n_crit`` cost model then takes: :func:`device_pair_flops`), the
tuner's report, and the sha256 of all that.

Nothing in a record is executed: its values are JSON numbers, strings or booleans, and each is
used only if it equals one of the values its recipe declares (:class:`~fmmloopy.tuning.recipe.
Parameter`). On reading, everything is checked: the digest, the fingerprint, the form. A record
that fails is rejected with a warning and deleted (the declared defaults run until ``fmmloopy
tune`` writes a new one); an entry whose recipe is not registered, or whose source changed
since it was tuned, or that names a parameter or value its recipe does not declare, is
ignored with a warning (the defaults run for it). The kernels of tuned values are kernels of
their own (the values are in their cache keys) and are checked like every kernel.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyopencl as cl

from fmmloopy.base.devices import vector_doubles
from fmmloopy.execution.cache_files import cache_dir, write_atomically
from fmmloopy.execution.kernel_cache import device_fingerprint, read_trusted, trusted_directory
from fmmloopy.maths.pair_precision import rsqrt_power
from fmmloopy.tuning.device_facts import (
    TRANSCENDENTAL_PAIR_FACTOR,
    DeviceFacts,
    declared_facts,
    device_kind,
)
from fmmloopy.tuning.recipe import Recipe
from fmmloopy.tuning.shipped import file_digest

__all__ = ["TuningRecordWarning", "declared_device_facts", "describe_record", "device_pair_flops",
           "drop_record", "kernel_pair_flops",
           "entry_name", "forget_records", "measured_rates", "read_record", "record_path",
           "recipe_digest", "store_record", "trying", "tuned_settings"]

#: Version of the record's form: a record of another version is rejected.
RECORD_VERSION = 1

#: What a record's values may be (JSON scalars).
_SCALARS = (bool, int, float, str)


class TuningRecordWarning(UserWarning):
    """A tuning record (or one of its entries) was rejected or could not be written."""


def entry_name(recipe: str, operator: str) -> str:
    """The record's name for the values of ``recipe`` on ``operator``: ``"cpu/m2l"``."""
    return f"{recipe}/{operator}"


def recipe_digest(recipe: Recipe) -> str | None:
    """sha256 of the source file of ``recipe``'s module (None where it cannot be read)."""
    return file_digest(getattr(recipe.function, "__module__", "") or "")


def record_path(device: cl.Device) -> Path:
    """The record file of ``device`` (its fingerprint's digest, made once per device, cache
    directory and vector width asked for: every kernel a plan asks for looks it up)."""
    directory = cache_dir()
    key = (device.int_ptr, str(directory), vector_doubles(device))
    name = _names.get(key)
    if name is None:
        name = _names[key] = hashlib.sha256(json.dumps(
            device_fingerprint(device), sort_keys=True).encode()).hexdigest()[:24]
    return directory / "tuning" / f"{name}.json"


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


_lock = threading.Lock()
#: (device, cache directory, vector doubles) -> the digest naming its record: record_path.
_names: dict[tuple, str] = {}
#: Record path -> its entries as read (``{entry name: (settings, recipe digest)}``).
_read: dict[str, dict[str, tuple[dict[str, Any], str]]] = {}
#: Record path -> its measured rates (None: none).
_rates: dict[str, dict[str, float] | None] = {}
#: Entries being tried (``fmmloopy tune``): ``{entry name: settings}``, ahead of the record.
_trials: dict[str, dict[str, Any]] = {}
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(f"fmmloopy tuning record: {message}", TuningRecordWarning, stacklevel=4)


def _checked(data: Any, device: cl.Device
             ) -> tuple[dict[str, tuple[dict[str, Any], str]], dict[str, float] | None]:
    """The entries and measured rates of a record's parsed JSON (ValueError naming what is
    wrong)."""
    if not isinstance(data, dict) or set(data) != {"body", "sha256"}:
        raise ValueError("not a tuning record")
    body = data["body"]
    if data["sha256"] != _digest(body):
        raise ValueError("the content digest does not match")
    if not isinstance(body, dict) or body.get("version") != RECORD_VERSION:
        raise ValueError(f"not a record of version {RECORD_VERSION}")
    if body.get("device") != device_fingerprint(device):
        raise ValueError("it was made for another device")
    entries = body.get("entries")
    if not isinstance(entries, dict):
        raise ValueError("no entries")
    rates = body.get("rates")
    if rates is not None and (not isinstance(rates, dict) or not all(
            isinstance(value, float) and math.isfinite(value) and value > 0
            for value in rates.values()) or "pair_flops" not in rates):
        raise ValueError("its measured rates are malformed")
    checked = {}
    for name, entry in entries.items():
        if (not isinstance(entry, dict) or set(entry) != {"settings", "recipe_sha256"}
                or not isinstance(entry["settings"], dict)
                or not isinstance(entry["recipe_sha256"], str)
                or not all(isinstance(value, _SCALARS) for value in entry["settings"].values())):
            raise ValueError(f"entry {name!r} is malformed")
        checked[name] = dict(entry["settings"]), entry["recipe_sha256"]
    return checked, rates


def read_record(device: cl.Device) -> dict[str, tuple[dict[str, Any], str]]:
    """``{entry name: (settings, recipe digest)}`` of ``device``'s record ({} if none; a record
    that fails its checks is rejected: warned and deleted). Read once per process."""
    path = record_path(device)
    with _lock:
        if str(path) in _read:
            return _read[str(path)]
    entries: dict[str, tuple[dict[str, Any], str]] = {}
    rates = None
    instead = "the recipes' declared defaults run (fmmloopy tune writes a new record)"
    if trusted_directory(path.parent, create=False, instead=instead) is not None:
        stored = read_trusted(path, instead)
        if stored is not None:
            try:
                entries, rates = _checked(json.loads(stored.decode("utf-8")), device)
            except Exception as error:  # any failure means the record cannot be trusted
                warnings.warn(f"fmmloopy tuning record: rejected {path} ({type(error).__name__}: "
                              f"{error}); deleted, {instead}", TuningRecordWarning, stacklevel=3)
                path.unlink(missing_ok=True)
                entries, rates = {}, None
    with _lock:
        if str(path) not in _read:
            _read[str(path)], _rates[str(path)] = entries, rates
        return _read[str(path)]


def forget_records() -> None:
    """Read the records from their files again at the next use (as a new process would)."""
    with _lock:
        _read.clear()
        _rates.clear()


def measured_rates(device: cl.Device) -> dict[str, float] | None:
    """The rates ``fmmloopy tune`` measured on ``device`` (``pair_flops``: a P2P pair's cost
    in matvec flops; the P2P pairs and matvec flops per second), None without a record."""
    read_record(device)
    with _lock:
        return _rates.get(str(record_path(device)))


def device_pair_flops(device: cl.Device) -> float:
    """What a P2P pair costs in matvec flops on ``device``, as the ``n_crit`` cost model takes
    it: measured by ``fmmloopy tune`` where the device has a record, else the constant of its
    kind (:func:`declared_device_facts`)."""
    rates = measured_rates(device)
    if rates is not None:
        return rates["pair_flops"]
    return declared_device_facts(device).pair_flops


def kernel_pair_flops(device: cl.Device, kernel) -> float:
    """:func:`device_pair_flops` for the pairs of ``kernel``: times
    :data:`~fmmloopy.tuning.device_facts.TRANSCENDENTAL_PAIR_FACTOR` where they call ``exp``,
    ``sin`` or ``cos`` or are complex (:func:`~fmmloopy.maths.pair_precision.rsqrt_power` has
    no bound for them)."""
    factor = 1.0 if rsqrt_power(kernel) is not None else TRANSCENDENTAL_PAIR_FACTOR
    return device_pair_flops(device) * factor


def declared_device_facts(device: cl.Device) -> DeviceFacts:
    """The declared facts of ``device``'s kind (:func:`~fmmloopy.tuning.device_facts.
    device_kind`: GPU, or a CPU by the vector width its recipes fill)."""
    return declared_facts(device_kind(bool(device.type & cl.device_type.GPU),
                                      vector_doubles(device)))


def tuned_settings(recipe: Recipe, operator: str, device: cl.Device) -> dict[str, Any]:
    """The values of ``recipe``'s parameters on ``operator`` that are in force on ``device``:
    those being tried (:func:`trying`), else the record's, else none ({}: the defaults)."""
    name = entry_name(recipe.name, operator)
    with _lock:
        if name in _trials:
            return dict(_trials[name])
    if not recipe.parameters:
        return {}
    entry = read_record(device).get(name)
    if entry is None:
        return {}
    settings, digest = entry
    if digest != recipe_digest(recipe):
        _warn_once(f"the values tuned for {name} are ignored: recipe {recipe.name!r} "
                   f"({recipe.source}) changed since (run fmmloopy tune again)")
        return {}
    declared = dict(recipe.parameters)
    for parameter, value in settings.items():
        if parameter not in declared or value not in declared[parameter].values:
            _warn_once(f"the values tuned for {name} are ignored: {parameter} = {value!r} is "
                       f"not a value recipe {recipe.name!r} declares")
            return {}
    return dict(settings)


@contextmanager
def trying(entries: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """Put ``{entry name: settings}`` in force in this process for the ``with`` block (ahead of
    the record): how the tuner builds a plan of candidate values."""
    with _lock:
        saved = dict(_trials)
        _trials.update({name: dict(settings) for name, settings in entries.items()})
    try:
        yield
    finally:
        with _lock:
            _trials.clear()
            _trials.update(saved)


def store_record(device: cl.Device, entries: Mapping[str, tuple[Mapping[str, Any], str]],
                 report: Any = None, rates: Mapping[str, float] | None = None) -> Path:
    """Write ``device``'s record: ``{entry name: (settings, recipe digest)}``, the measured
    ``rates`` (:func:`measured_rates`) and the tuner's ``report`` (JSON data); in force in this
    process at once. OSError if it cannot be written."""
    path = record_path(device)
    body = {"version": RECORD_VERSION, "device": device_fingerprint(device),
            "entries": {name: {"settings": dict(settings), "recipe_sha256": digest}
                        for name, (settings, digest) in entries.items()},
            "rates": None if rates is None else {key: float(value)
                                                 for key, value in rates.items()},
            "report": report}
    text = json.dumps({"body": body, "sha256": _digest(body)}, sort_keys=True, indent=1)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomically(path, lambda stream: stream.write(text.encode()))
    with _lock:
        _read[str(path)] = {name: (dict(settings), digest)
                            for name, (settings, digest) in entries.items()}
        _rates[str(path)] = body["rates"]
    return path


def describe_record(device: cl.Device) -> str:
    """Whether ``device`` has a tuning record, in words (for ``fmmloopy recipes``)."""
    entries = read_record(device)
    if not entries and measured_rates(device) is None:
        return ("no tuning record: the declared defaults (fmmloopy tune writes "
                f"{record_path(device)})")
    return f"tuning record {record_path(device)}, {len(entries)} entries"


def drop_record(device: cl.Device) -> bool:
    """Delete ``device``'s record (the declared defaults run again); whether there was one."""
    path = record_path(device)
    existed = path.exists()
    path.unlink(missing_ok=True)
    with _lock:
        _read.pop(str(path), None)
        _rates.pop(str(path), None)
    return existed

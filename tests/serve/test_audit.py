import threading

import pytest

from tbensemble.core.errors import DataError
from tbensemble.serve.audit import AUDIT_FIELDS, AuditLog, cut_torn_tail, read_audit


def _record(i: int) -> dict:
    return {key: f"{key}-{i}" for key in AUDIT_FIELDS} | {"score": i / 10, "pixels": "never written"}


def test_lines_have_only_the_audit_fields(tmp_path):
    log = AuditLog(tmp_path / "a" / "audit.jsonl")
    log.append([_record(1), _record(2)])
    log.close()
    records = read_audit(tmp_path / "a" / "audit.jsonl")
    assert [tuple(r) for r in records] == [AUDIT_FIELDS, AUDIT_FIELDS]
    assert [r["request_id"] for r in records] == ["request_id-1", "request_id-2"]


def test_concurrent_appends_never_interleave(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    threads = [
        threading.Thread(target=lambda k=k: [log.append([_record(k * 100 + i)] * 3) for i in range(20)])
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert len(read_audit(tmp_path / "audit.jsonl")) == 4 * 20 * 3


def test_torn_last_line_is_cut_on_open_and_earlier_lines_kept(tmp_path, caplog):
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append([_record(1)])
    with open(path, "ab") as handle:
        handle.write(b'{"time": "2026-01-01T00:00:00", "request_id": "torn')
    with pytest.raises(DataError, match="torn"):
        read_audit(path)
    log = AuditLog(path)
    assert "torn last line" in caplog.text
    log.append([_record(2)])
    log.close()
    assert [r["request_id"] for r in read_audit(path)] == ["request_id-1", "request_id-2"]


def test_torn_tail_longer_than_one_read_block(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b"x" * 10_000)
    assert cut_torn_tail(path) == 10_000
    assert path.read_bytes() == b'{"a": 1}\n'
    path.write_bytes(b"y" * 5000)
    assert cut_torn_tail(path) == 5000 and path.read_bytes() == b""


def test_unwritable_audit_log_is_a_one_line_error(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(DataError, match="cannot open the audit log"):
        AuditLog(tmp_path / "dir.jsonl")

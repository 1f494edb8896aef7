"""printer-service's FTPS adapter against the simulator's storage quirks, over real FTPS:
the P2S "426 after a whole upload" (SIZE decides: success) and a full storage (552: a clear
failure, nothing left on the printer)."""

from __future__ import annotations

import pytest

from pantheon_sim.bambu.farm import BambuSimFarm
from pantheon_sim.bambu.printer import FaultSettings
from printer_service.adapters.ftps import BambuFtps, ImplicitFtpTls
from printer_service.adapters.tls import printer_tls_context
from printer_service.domain.ports import UploadFailed

from .conftest import SimFactory

pytestmark = pytest.mark.integration


def _client(farm: BambuSimFarm, printer_id: int) -> BambuFtps:
    ep = farm.endpoint(printer_id)
    context = printer_tls_context(ep.serial, ep.ca_file)
    return BambuFtps(ep.host, ep.ftps_port, ep.access_code, context, timeout_s=20)


def test_an_upload_answered_426_is_checked_by_size_and_succeeds(sim_farm: SimFactory) -> None:
    farm = sim_farm([14], faults={14: FaultSettings(ftps_426_after_write=True)})
    data = b"; HEADER_BLOCK_START\n" + b"G1 X1 Y1\n" * 50_000
    _client(farm, 14).upload("job.gcode.3mf", data)
    assert (farm.storage_dir(14) / "job.gcode.3mf").read_bytes() == data


def test_a_full_printer_storage_is_a_clear_upload_failure(sim_farm: SimFactory) -> None:
    farm = sim_farm([14])
    used = sum(p.stat().st_size for p in farm.storage_dir(14).rglob("*") if p.is_file())
    farm.set_faults(14, FaultSettings(ftps_capacity_bytes=used + 10_000))
    with pytest.raises(UploadFailed, match="552"):
        _client(farm, 14).upload("big.gcode.3mf", b"x" * 50_000)
    assert not (farm.storage_dir(14) / "big.gcode.3mf").exists()


def test_the_adapter_sets_binary_mode_itself(
    sim_farm: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """printer-service does not rely on the printer storing ASCII-mode uploads byte for byte
    (vsFTPd's default, which bambu-sim now follows): it sends TYPE I before every STOR and SIZE,
    so a server that converts CRLF in ASCII mode (pyftpdlib's default, an older or other
    firmware) still gets the package unchanged."""
    sent: list[str] = []
    real_putcmd = ImplicitFtpTls.putcmd

    def recording_putcmd(self: ImplicitFtpTls, line: str) -> None:
        sent.append(line.split(" ", 1)[0].upper() + (" I" if line.upper() == "TYPE I" else ""))
        real_putcmd(self, line)

    monkeypatch.setattr(ImplicitFtpTls, "putcmd", recording_putcmd)
    farm = sim_farm([14])
    data = b"PK\x03\x04" + b"G1 X1 Y1\r\n" * 1000 + b"\r\n\r"
    _client(farm, 14).upload("crlf.gcode.3mf", data)
    assert (farm.storage_dir(14) / "crlf.gcode.3mf").read_bytes() == data
    stor, size = sent.index("STOR"), sent.index("SIZE")
    assert "TYPE I" in sent[:stor], sent
    assert "TYPE I" in sent[stor:size], sent

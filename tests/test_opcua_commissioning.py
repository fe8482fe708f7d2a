"""OPC UA commissioning: node ids by namespace URI in the site file, the trust settings and
what check-config says of them, ``heatd opcua cert``, ``heatd browse`` and ``heatd probe``
with the server's types (``--check-types``), against a real asyncua server."""

from __future__ import annotations

import datetime
import io
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from ruamel.yaml import YAML

from heatd.browse import browse
from heatd.cli import build_parser
from heatd.config import OpcUaPointConfig
from heatd.config_loader import ConfigError, check_site, parse_site
from heatd.drivers.opcua.failures import ConnectFailure, Failure
from heatd.drivers.opcua.namespaces import NamespaceError, NodeRef, changed_uris, nsu_text, resolve
from heatd.drivers.opcua.trust import check_server_certificate, thumbprint
from heatd.opcua_cert import make_certificate
from heatd.probe import probe

from opcua_servers import NAMESPACE, READ_ONLY, start_server

ARRAY = ("http://opcfoundation.org/UA/", "urn:server", "urn:decoy", "urn:plant")


@pytest.mark.parametrize(("text", "ref"), [
    ("nsu=urn:plant;s=Loop.Supply", NodeRef("s=Loop.Supply", uri="urn:plant")),
    ("nsu=http://x.org/UA/a%3Bb;i=7", NodeRef("i=7", uri="http://x.org/UA/a;b")),
    ("ns=3;s=A;B", NodeRef("s=A;B", index=3)),
    ("i=85", NodeRef("i=85")),
])
def test_node_ref_parses_and_prints_back(text: str, ref: NodeRef) -> None:
    assert NodeRef.parse(text) == ref
    assert str(ref) == text


def test_resolution_by_uri_and_by_declared_index() -> None:
    assert resolve(NodeRef("s=X", uri="urn:plant"), ARRAY, {}) == 3
    assert resolve(NodeRef("s=X", index=2), ARRAY, {}) == 2  # undeclared: taken as written
    assert resolve(NodeRef("s=X", index=3), ARRAY, {3: "urn:plant"}) == 3
    with pytest.raises(NamespaceError, match="ns=2 is urn:decoy, the site expects urn:plant; "
                       "urn:plant is ns=3"):
        resolve(NodeRef("s=X", index=2), ARRAY, {2: "urn:plant"})
    with pytest.raises(NamespaceError, match="ns=7 does not exist"):
        resolve(NodeRef("s=X", index=7), ARRAY, {7: "urn:plant"})
    with pytest.raises(NamespaceError, match="urn:gone not on the server"):
        resolve(NodeRef("s=X", uri="urn:gone"), ARRAY, {})
    assert nsu_text(ARRAY[0], "i=85") == "i=85"
    assert changed_uris(ARRAY, (*ARRAY[:2], "urn:plant", "urn:decoy")) == {
        "urn:plant": (3, 2), "urn:decoy": (2, 3)}


OPCUA_SITE = """\
site: {{id: t}}
devices:
  plc:
    protocol: opcua
    endpoint: {endpoint}
    timeout: 1.0
    mode: polling
{extra}    points:
{points}"""


def site_text(points: str, endpoint: str = "opc.tcp://127.0.0.1:4840", extra: str = "") -> str:
    return OPCUA_SITE.format(endpoint=endpoint, extra=extra, points=points)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(text, "site.yaml")
    return [str(p) for p in caught.value.problems]


def test_nsu_node_ids_and_untyped_writable_points_are_accepted() -> None:
    site = parse_site(site_text(
        '      supply: {node_id: "nsu=urn:vendor:plant;s=Loop.Supply"}\n'
        '      valve: {node_id: "nsu=urn:vendor:plant;i=1001", writable: true}\n',
        extra='    namespaces: {2: "urn:vendor:plant"}\n'), "site.yaml")
    point = site.point("plc.valve")
    assert isinstance(point, OpcUaPointConfig) and point.data_type is None
    assert site.devices["plc"].namespaces == {2: "urn:vendor:plant"}  # type: ignore[union-attr]


def test_bad_node_ids_and_namespaces_name_file_line_and_field() -> None:
    problems = problems_of(site_text(
        '      a: {node_id: "nsu=;s=Loop.Supply"}\n'
        '      b: {node_id: "ns=2;q=1"}\n',
        extra='    namespaces: {0: "urn:x"}\n'))
    assert problems[0] == ("site.yaml:8: devices.plc.namespaces.[key]: '0': Input should be "
                           "greater than or equal to 1")
    assert problems[1].startswith("site.yaml:10: devices.plc.points.a.node_id: "
                                  "'nsu=;s=Loop.Supply' is not an OPC UA node id")
    assert problems[2].startswith("site.yaml:11: devices.plc.points.b.node_id:")


SECURED = """\
    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
    certificate: {cert}
    private_key: {key}
    application_uri: {uri}
{trust}"""


def test_a_secured_device_must_say_which_server_it_trusts(tmp_path: Path) -> None:
    files = make_certificate("urn:heatd:t", tmp_path)
    secured = SECURED.format(cert=files.pem, key=files.key, uri="urn:heatd:t", trust="")
    [problem] = problems_of(site_text('      a: {node_id: "i=2258"}\n', extra=secured))
    assert problem == ("site.yaml:3: devices.plc.opcua: a secured device needs trust: pinned "
                       "with server_certificate, list with trust_list, or any (insecure)")


def test_check_config_names_certificate_problems_and_warns_of_trust_any(
    tmp_path: Path,
) -> None:
    files = make_certificate("urn:heatd:other", tmp_path)
    empty = tmp_path / "trusted"
    empty.mkdir()
    for trust, expect in [
        (f"    trust: list\n    trust_list: {empty}\n", "devices.plc.trust_list: "
         f"{empty} holds no .der, .pem, .crt or .cer certificate"),
        (f"    server_certificate: {tmp_path / 'nope.der'}\n",
         f"devices.plc.server_certificate: {tmp_path / 'nope.der'}: No such file"),
    ]:
        path = tmp_path / "site.yaml"
        path.write_text(site_text('      a: {node_id: "ns=2;s=A"}\n', extra=SECURED.format(
            cert=files.pem, key=files.key, uri="urn:heatd:t", trust=trust)))
        with pytest.raises(ConfigError) as caught:
            check_site(path)
        text = "\n".join(str(p) for p in caught.value.problems)
        assert f"{path}:10: devices.plc.certificate: application_uri urn:heatd:t is not in " \
            f"{files.pem} (its SubjectAltName URIs: urn:heatd:other)" in text
        assert expect in text

    path.write_text(site_text('      a: {node_id: "ns=2;s=A"}\n', extra=SECURED.format(
        cert=files.pem, key=files.key, uri="urn:heatd:other", trust="    trust: any\n")))
    notes = check_site(path).notes
    assert any("devices.plc.trust: any is INSECURE" in note for note in notes)
    assert any("devices.plc: node ids name ns=2 by index only" in note for note in notes)


def cli(*argv: str) -> int:
    """Run a heatd command as main would, without reconfiguring the test's logging."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


def test_cert_command_puts_the_uri_in_the_subject_alt_name(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pki"
    assert cli("opcua", "cert", "--uri", "urn:heatd:site1", "--out", str(out),
               "--host", "gw1.example") == 0
    cert = x509.load_der_x509_certificate((out / "heatd.der").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:heatd:site1"]
    assert san.get_values_for_type(x509.DNSName) == ["gw1.example"]
    assert x509.load_pem_x509_certificate((out / "heatd.pem").read_bytes()) == cert
    assert stat.S_IMODE(os.stat(out / "heatd.key.pem").st_mode) == 0o600
    assert "application_uri: urn:heatd:site1" in capsys.readouterr().out
    assert cli("opcua", "cert", "--uri", "urn:heatd:x", "--out", str(out)) == 1
    assert x509.load_der_x509_certificate((out / "heatd.der").read_bytes()) == cert


async def test_browse_lists_variables_and_writes_a_snippet_the_site_accepts(
    tmp_path: Path,
) -> None:
    server = await start_server()
    try:
        site = parse_site(site_text('      a: {node_id: "i=2258"}\n', server.endpoint),
                          "site.yaml")
        out = io.StringIO()
        snippet = tmp_path / "points.yaml"
        assert await browse(site, "plc", None, out, snippet=snippet) == 0
    finally:
        await server.stop()
    lines = out.getvalue().splitlines()
    supply = next(line for line in lines if f"nsu={NAMESPACE};s=Loop.SupplyTemp " in line)
    assert supply.split()[1:] == ["Plant/Loop.SupplyTemp", "Double", "read/write", "35.5"]
    status = next(line for line in lines if f"s={READ_ONLY} " in line)
    assert status.split()[2:4] == ["Double", "read"]
    assert "ServerStatus" not in out.getvalue()  # namespace 0 is left out from Objects

    points = YAML(typ="safe").load(snippet.read_text())["points"]
    assert points["plant_loop_supplytemp"] == {
        "node_id": f"nsu={NAMESPACE};s=Loop.SupplyTemp", "data_type": "float64"}
    assert points["plant_hp_running"]["data_type"] == "bool"
    text = site_text("".join(f"      {name}: {{node_id: \"{p['node_id']}\", data_type: "
                             f"{p['data_type']}}}\n" for name, p in points.items()))
    assert len(parse_site(text, "site.yaml").devices["plc"].points) == len(points) == 8


async def test_probe_shows_server_types_and_check_types_flags_mismatches() -> None:
    server = await start_server()
    try:
        site = parse_site(site_text(
            f'      supply: {{node_id: "nsu={NAMESPACE};s=Loop.SupplyTemp"}}\n'
            f'      valve: {{node_id: "nsu={NAMESPACE};s=Loop.Valve", writable: true}}\n'
            f'      flow: {{node_id: "nsu={NAMESPACE};s=Loop.Flow", data_type: float64}}\n'
            f'      status: {{node_id: "nsu={NAMESPACE};s={READ_ONLY}", writable: true}}\n'
            f'      energy: {{node_id: "nsu={NAMESPACE};s=Rack.Energy", scale: 0.001}}\n',
            server.endpoint), "site.yaml")
        plain, checked = io.StringIO(), io.StringIO()
        assert await probe(site, None, plain) == 0
        assert await probe(site, None, checked, check_types=True) == 2
    finally:
        await server.stop()
    rows = {line.split()[0]: line.split() for line in plain.getvalue().splitlines()[2:]
            if line.startswith("  ")}
    assert rows["supply"][1:] == ["35.5", "35.5", "Double", "read/write", "good"]
    assert rows["energy"][1:] == ["123456789", "123456.789", "Int64", "read/write", "good"]
    assert rows["status"][3:5] == ["Double", "read"]
    assert "type mismatches" not in plain.getvalue()
    mismatches = [line.strip() for line in
                  checked.getvalue().split("type mismatches:\n")[1].strip().splitlines()]
    assert mismatches == [
        "flow: data_type float64, the server's Float is float32",
        "status: writable, the server gives heatd read access",
    ]


def test_acquisition_hands_driver_events_to_the_daemon() -> None:
    from heatd.acquisition import Acquisition
    from heatd.devices import point_limits
    from heatd.points import PointImage

    site = parse_site(site_text('      a: {node_id: "nsu=urn:plant;s=A"}\n'), "site.yaml")
    seen: list[tuple[str, str, dict[str, object]]] = []
    acquisition = Acquisition(site, PointImage(point_limits(site)),
                              on_event=lambda *event: seen.append(event))
    acquisition.devices["plc"].driver.on_event("namespaces_changed", {"moved": {}})
    assert seen == [("plc", "namespaces_changed", {"moved": {}})]


def _signed(subject: str, issuer: str, key: rsa.RSAPrivateKey, signer: rsa.RSAPrivateKey,
            ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    return (x509.CertificateBuilder().subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))


def test_trust_list_takes_listed_and_ca_issued_certificates(tmp_path: Path) -> None:
    ca_key, server_key, rogue_key = (rsa.generate_private_key(public_exponent=65537,
                                                              key_size=2048) for _ in range(3))
    ca = _signed("plant CA", "plant CA", ca_key, ca_key, ca=True)
    issued = _signed("plc", "plant CA", server_key, ca_key, ca=False)
    forged = _signed("plc", "plant CA", rogue_key, rogue_key, ca=False)
    folder = tmp_path / "trusted"
    folder.mkdir()
    (folder / "ca.pem").write_bytes(ca.public_bytes(Encoding.PEM))
    check_server_certificate(issued, "list", pinned=None, folder=str(folder))
    check_server_certificate(ca, "list", pinned=None, folder=str(folder))
    with pytest.raises(ConnectFailure) as refused:
        check_server_certificate(forged, "list", pinned=None, folder=str(folder))
    assert refused.value.kind is Failure.SERVER_NOT_TRUSTED
    assert thumbprint(forged) in str(refused.value)

    pin = tmp_path / "pin.der"
    pin.write_bytes(issued.public_bytes(Encoding.DER))
    check_server_certificate(issued, "pinned", pinned=str(pin), folder=None)
    with pytest.raises(ConnectFailure, match=f"server_pin_mismatch: the server presents "
                       f"CN=plc, thumbprint {thumbprint(forged)}, not the pinned {pin}"):
        check_server_certificate(forged, "pinned", pinned=str(pin), folder=None)
    check_server_certificate(forged, "any", pinned=None, folder=None)

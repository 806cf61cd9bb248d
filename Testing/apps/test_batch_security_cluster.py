"""`iqt batch`'s local Dask cluster takes only its own run's connections (on plain TCP any local user's
`Client('tcp://127.0.0.1:PORT')` ran code in the workers and read the task keys, which carried the subjects' labels):
TLS with credentials made for the run, in memory; task keys without subject labels; a --scheduler of one's own on
TLS reached with the credentials Dask's configuration names, or refused in one line. A real LocalCluster throughout."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import sys

import pytest

pytest.importorskip("distributed")
pytest.importorskip("cryptography")

from distributed import Client  # noqa: E402
from distributed.security import Security  # noqa: E402

from ImageQualityTransferLib.apps import batch, cli  # noqa: E402
from ImageQualityTransferLib.apps.batch import local_cluster, scheduler  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTError  # noqa: E402

import helpers  # noqa: E402


@pytest.fixture(scope="module")
def local():
    """(client, cluster) as `iqt batch --workers 1` starts them, the workers importing the engine from this tree."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", helpers.engine_env()["PYTHONPATH"])
        client, c = batch.start_client(1, dashboard_address="127.0.0.1:0")
    yield client, c
    client.close()
    c.close()


def _handshake(address: str, cert: Security | None) -> str:
    """What the server at `address` says to a TLS client that does not check it and shows `cert`'s certificate (or
    none): the error's text, or "accepted"."""
    import os
    import tempfile

    host, port = address.split("://")[1].rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert is not None:
        with tempfile.TemporaryDirectory() as d:
            for name, text in (("c.pem", cert.tls_client_cert), ("k.pem", cert.tls_client_key)):
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            ctx.load_cert_chain(os.path.join(d, "c.pem"), os.path.join(d, "k.pem"))
    try:
        with socket.create_connection((host, int(port)), timeout=10) as s, ctx.wrap_socket(s) as t:
            t.sendall(b"\0" * 8)
            t.recv(8)
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
    return "accepted"


def test_the_local_cluster_refuses_connections_without_the_run_s_credentials(local):
    client, c = local
    address = c.scheduler_address
    assert address.startswith("tls://127.0.0.1:")
    assert client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3  # the run's own client
    workers = list(client.scheduler_info()["workers"])
    assert workers and all(w.startswith("tls://") for w in workers)
    for target in [address, *workers]:  # the scheduler and the workers, as an intruder reaches them
        with pytest.raises((OSError, TypeError)):  # plain TCP to a TLS server; Dask's Client with no credentials
            Client(target.replace("tls://", "tcp://"), timeout=3)
        with pytest.raises(OSError):  # a client with credentials of its own
            Client(address, timeout=5, security=Security.temporary())
        # the server ends the handshake (TLS 1.3 may say it only after the client's first bytes: an EOF then)
        assert _handshake(target, None) != "accepted"
        assert _handshake(target, Security.temporary()) != "accepted"


def test_task_keys_carry_no_subject_label(local, tmp_path):
    client, _ = local
    out = helpers.tensor_list(tmp_path, "DOEJOHN.nii.gz")
    keys = []
    submit = client.submit

    def recording(*args, **kwargs):
        keys.append(kwargs["key"])
        return submit(*args, **kwargs)

    client.submit = recording
    try:
        res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, client,
                               progress=False)
    finally:
        del client.submit
    assert [r["status"] for r in res] == ["done"] and res[0]["subject"] == "sub-DOEJOHN"
    assert len(keys) == 1 and "DOEJOHN" not in keys[0] and keys[0].startswith("iqt-")


def test_a_tls_scheduler_without_configured_credentials_is_refused_in_one_line(local, tmp_path, capsys, monkeypatch):
    """A --scheduler on TLS that is not this process's own cluster: Dask's configuration names the credentials; where
    it names none, one line (Dask's Client raised an internal TypeError)."""
    address = local[1].scheduler_address
    monkeypatch.delitem(scheduler._OWN_CLUSTERS, address)
    helpers.tensor_list(tmp_path)
    code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o"), "--method", "cubic",
                     "--scheduler", address])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"iqt: error: --scheduler {address}: a TLS scheduler takes clients with its credentials only")
    assert not (tmp_path / "o").exists()


def test_a_run_on_this_process_s_own_cluster_and_one_with_configured_credentials(local, tmp_path, capsys, monkeypatch):
    import dask

    address = local[1].scheduler_address
    helpers.tensor_list(tmp_path)
    args = ["batch", str(tmp_path / "list.txt"), "--method", "cubic", "--scheduler", address]
    assert cli.main([*args, "-o", str(tmp_path / "own")]) == 0, capsys.readouterr()
    sec = scheduler._OWN_CLUSTERS[address]  # the credentials given as Dask's configuration gives a cluster's files
    monkeypatch.delitem(scheduler._OWN_CLUSTERS, address)
    with dask.config.set({"distributed.comm.tls.ca-file": sec.tls_ca_file, "distributed.comm.tls.client.cert":
                          sec.tls_client_cert, "distributed.comm.tls.client.key": sec.tls_client_key}):
        assert cli.main([*args, "-o", str(tmp_path / "configured")]) == 0, capsys.readouterr()


def test_without_cryptography_the_local_cluster_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography", None)  # an import of it fails, as where it is not installed
    with pytest.raises(IQTError, match="needs the cryptography package"):
        local_cluster.local_security()
    helpers.tensor_list(tmp_path)
    code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o"), "--method", "cubic"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.strip() == f"iqt: error: {local_cluster.no_cryptography()}", err
    assert not (tmp_path / "o").exists()


def test_a_tls_address_that_is_no_scheduler_is_refused_in_one_line(local, tmp_path, capsys, monkeypatch):
    """Over TLS too, what listens at --scheduler must answer as a scheduler (a worker's tls:// port gave an
    internal TypeError, exit 1)."""
    import dask

    client, c = local
    worker = next(iter(client.scheduler_info()["workers"]))
    sec = scheduler._OWN_CLUSTERS[c.scheduler_address]
    helpers.tensor_list(tmp_path)
    with dask.config.set({"distributed.comm.tls.ca-file": sec.tls_ca_file, "distributed.comm.tls.client.cert":
                          sec.tls_client_cert, "distributed.comm.tls.client.key": sec.tls_client_key}):
        code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o"), "--method", "cubic",
                         "--scheduler", worker])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "a Dask Worker answers there, not the scheduler" in err, err
    assert not (tmp_path / "o").exists()


def test_a_tls_scheduler_with_other_credentials_is_named_as_a_credentials_mismatch(local, tmp_path, capsys):
    """Credentials in Dask's configuration that are not the cluster's: the handshake fails, and the line says so (it
    said "start one with 'dask scheduler'", to a user whose scheduler was running)."""
    import dask

    address = local[1].scheduler_address
    other = Security.temporary()
    helpers.tensor_list(tmp_path)
    saved = scheduler._OWN_CLUSTERS.pop(address)
    try:
        with dask.config.set({"distributed.comm.tls.ca-file": other.tls_ca_file, "distributed.comm.tls.client.cert":
                              other.tls_client_cert, "distributed.comm.tls.client.key": other.tls_client_key}):
            code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o"), "--method", "cubic",
                             "--scheduler", address])
    finally:
        scheduler._OWN_CLUSTERS[address] = saved
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "the TLS handshake failed" in err and "are not this cluster's" in err and "start one" not in err, err
    assert "plain TCP" not in err  # the certificate did not verify: the credentials, not the scheme
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, said", [
    (["--memory-limit", "1KB", "--dashboard-address", "999.9.9.9:1"],
     "iqt: error: --memory-limit and --dashboard-address with --scheduler: they set up the local cluster"),
    (["--dashboard-address", "127.0.0.1:8787"], "iqt: error: --dashboard-address with --scheduler: it sets up"),
    (["--workers", "2"], "iqt batch: error: argument --workers: not allowed with argument --scheduler")])
def test_the_local_cluster_s_options_beside_a_scheduler_are_refused_before_connecting(tmp_path, capsys, monkeypatch,
                                                                                        extra, said):
    """They had been ignored without a word (--workers 2, its default, passed argparse's check as if not given)."""
    def no_client(*a, **k):
        raise AssertionError("connected")

    monkeypatch.setattr(batch, "start_client", no_client)
    helpers.tensor_list(tmp_path)
    try:
        code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o"), "--method", "cubic",
                         "--scheduler", "tcp://127.0.0.1:1", *extra])
    except SystemExit as stop:  # argparse's own refusal of an option its group excludes
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(said), err
    assert not (tmp_path / "o").exists()


def test_a_local_cluster_s_credentials_are_forgotten_when_it_closes(monkeypatch):
    """Each local cluster start_client started had left its address and credentials in the registry for the process's
    life (a review): a Python or Slicer session running many cohorts kept one per cohort, and a later scheduler at a
    reused port was offered them. Closed through Dask's own path (Cluster.close runs its `_close`), it is forgotten."""
    import asyncio
    import types

    import distributed

    from ImageQualityTransferLib.apps.batch import dask_client

    async def closed():
        return None

    cluster = types.SimpleNamespace(scheduler_address="tls://127.0.0.1:1", _close=closed)
    cluster.close = lambda: asyncio.run(cluster._close())  # as distributed's Cluster.close: self.sync(self._close)
    monkeypatch.setattr(dask_client, "_spawn_ignoring_ctrl_c", lambda make: (cluster, False))
    monkeypatch.setattr(distributed, "Client", lambda c: types.SimpleNamespace(cluster=c))
    client, started = dask_client.start_client(1, dashboard_address="127.0.0.1:0")
    assert started is cluster and isinstance(scheduler.client_security(cluster.scheduler_address), Security)
    assert cluster.scheduler_address in scheduler._OWN_CLUSTERS
    cluster.close()
    assert cluster.scheduler_address not in scheduler._OWN_CLUSTERS


def _self_signed(folder) -> None:
    """A self-signed certificate (its own CA) for localhost and 127.0.0.1, as cert.pem and key.pem in `folder`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))


@contextlib.contextmanager
def _tls_proxy(port: int, folder, seen: list | None = None):
    """A TLS-terminating proxy on 127.0.0.1 (the certificate in `folder`) passing each connection's bytes to the plain
    port `port`, as a site's wss:// front (nginx, JupyterHub) does for a ws scheduler; yields its port. `seen`: gets
    the bytes each client sent, once decrypted."""
    import asyncio
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    loop, ready = asyncio.new_event_loop(), []

    async def pipe(reader, writer, log=None):
        try:
            while data := await reader.read(65536):
                if log is not None:
                    log.append(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        back_reader, back_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, back_writer, seen), pipe(back_reader, writer))

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        ready.append((server, server.sockets[0].getsockname()[1]))

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    async def stop():  # the server and every connection's pipes ended before the loop closes
        ready[0][0].close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        yield ready[0][1]
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_wss_scheduler_is_reached_with_the_system_s_certificates(tmp_path, monkeypatch):
    """wss:// without Dask's TLS settings (iqt takes no certificate files: Dask's Client checks the server with the
    system's certificates) had no test: a ws scheduler behind a TLS proxy whose self-signed certificate the system
    store (OpenSSL's SSL_CERT_FILE) trusts is reached, the URL's login sent; untrusted, one line, nothing sent. Dask's
    own tls:// and wss:// listeners ask every client for a certificate, so only such a proxy meets the system's store."""
    import tornado.netutil
    from distributed import LocalCluster

    from ImageQualityTransferLib.apps.batch import dask_client

    _self_signed(tmp_path)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="ws://", dashboard_address=None)
    try:
        seen = []  # what reached the proxy: the login in the clear only once the certificate verified
        with _tls_proxy(int(cluster.scheduler_address.rsplit(":", 1)[1]), tmp_path, seen) as port:
            given = f"wss://alice:S3cret@localhost:{port}/"
            login = b"Basic " + base64.b64encode(b"alice:S3cret")
            for trusted in (False, True):
                if trusted:
                    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
                tornado.netutil._client_ssl_defaults.cache_clear()  # tornado keeps the system's context made first
                if not trusted:
                    with pytest.raises(IQTError) as err:
                        dask_client.start_client(scheduler=given, wait_workers=5)
                    assert "the server's certificate does not verify, and no login was sent" in str(err.value), err.value
                    assert "S3cret" not in str(err.value) and login not in b"".join(seen), seen
                    continue
                client, started = dask_client.start_client(scheduler=given, wait_workers=5)
                try:
                    assert started is None and client.submit(sum, [1, 2], pure=False).result(timeout=10) == 3
                    assert login in b"".join(seen)  # the recorder sees a login where one is sent
                finally:
                    client.close()
    finally:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        tornado.netutil._client_ssl_defaults.cache_clear()  # the system's own again for later tests
        cluster.close()

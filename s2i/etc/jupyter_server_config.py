"""System-wide Jupyter server settings of the nbs2i builder image.

Read by every server the image starts (JupyterLab and jupyterhub-singleuser).
Settings that are security decisions live here rather than on the command line.
"""

import os

c = get_config()  # noqa: F821  (injected by traitlets when this file is loaded)

# The password hash that the run script wrote: read once, then deleted, so
# kernels and terminals (same UID) can read neither the password nor its hash.
_password_file = os.environ.pop("NBS2I_PASSWORD_FILE", "")
if _password_file:
    with open(_password_file, encoding="utf-8") as _f:
        c.PasswordIdentityProvider.hashed_password = _f.read().strip()
    os.unlink(_password_file)

# Notebook trust (an HMAC secret and a signature database, made 0600) lives
# with the per-process runtime files that the entrypoint puts under /tmp, not
# in HOME: 0600 files one UID left on a shared volume would lock the next
# random UID out of every notebook (HTTP 500). Trust then lasts one run.
if os.environ.get("JUPYTER_RUNTIME_DIR"):
    c.NotebookNotary.data_dir = os.environ["JUPYTER_RUNTIME_DIR"]

# Kernels run in the kernel environment (/opt/app-root/venv) through the
# image's kernelspecs, never in the server's: no fallback "python3" kernel
# made from the server's own interpreter.
c.KernelSpecManager.ensure_native_kernel = False

# Authentication is never off: no handler is reachable without a token or
# password unless it declares itself public (e.g. /api for health checks).
c.ServerApp.allow_unauthenticated_access = False
c.ServerApp.open_browser = False

# Terminals get a real login-less bash (nss_wrapper gives it a user name).
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}

# A stop must finish within the platform's grace period: kernels get a short
# time to exit cleanly before they are killed.
c.KernelManager.shutdown_wait_time = 1.0
c.MappingKernelManager.cull_idle_timeout = 0

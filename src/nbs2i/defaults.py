"""The defaults a user sees in `--help`, defined once.

The modules that own these behaviours import them from here, and so does the
command line, which must not import those modules before a command runs
(`nbs2i --help` starts in a few tens of milliseconds). Nothing here imports.
"""

from __future__ import annotations

# nbs2i build
PULL_POLICIES = ("always", "never", "if-not-present")
PULL_POLICY = "if-not-present"
ALLOWED_UIDS = "1-"
EXCLUDE = r"(^|/)\.git(/|$)"

# nbs2i builder build
BASE_IMAGE = "debian:bookworm-slim"
BUILDER_REPOSITORY = "nbs2i/builder"

# nbs2i deploy
DEPLOY_TARGETS = ("openshift", "kubernetes", "zero-to-jupyterhub")
DEPLOY_NAME = "notebooks"
DEPLOY_STORAGE = "1Gi"
DEPLOY_MEMORY = "1Gi"
# The builder's variants: the kernel environment's packages (the platform
# hardening is the same for all), and the JupyterHub major its
# jupyterhub-singleuser matches.
VARIANTS = ("minimal", "scipy", "r", "datascience")
VARIANT = "minimal"
# The variants with R (s2i/Dockerfile installs it for them): install.R runs there.
R_VARIANTS = ("r", "datascience")
JUPYTERHUB_MAJORS = ("6", "5")
JUPYTERHUB_MAJOR = "6"

# nbs2i run and nbs2i verify
RUN_PORT = 8888  # on the host's loopback
RUN_TIMEOUT = 60.0  # seconds for the server to answer
VERIFY_TIMEOUT = 60.0
# nbs2i test (and build --test): seconds each notebook may run, and the whole run
TEST_TIMEOUT = 300.0
TEST_TOTAL_TIMEOUT = 3600.0
# nbs2i verify and nbs2i test: the report on stdout
REPORT_FORMATS = ("table", "json", "junit")
REPORT_FORMAT = "table"

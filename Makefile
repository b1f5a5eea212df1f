# kinesis-loader: a thin wrapper over CMake and scripts/. The real work is in
# CMakeLists.txt and scripts/*.sh, which can be run directly too.
#
#   make run      install what is missing, build, run the service on the embedded
#                 default (scripts/run.sh; ARGS="read s" runs another command)
#   make test     install, build build/ and build-asan/, start the local
#                 services, run every test, stop the services (scripts/test.sh)
#   make build    configure and build build/ (-Werror when CI=true)
#   make bench    build and run the programs under bench/ (scripts/bench.sh)
#   make lint     clang-tidy, cppcheck and a clang-format check (scripts/lint.sh)
#   make format   clang-format -i on the C sources
#   make services-start | services-stop | services-status
#   make clean    remove the build directories

SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
WERROR := $(if $(filter true 1 yes,$(CI)),ON,OFF)

# `make run ARGS="..."` runs that command of the binary instead of the service.
ARGS ?=

# C sources under the project's own folders (not node_modules or builds).
C_SOURCES = $(shell find core api server tests bench \
	-path tests/node_modules -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print 2>/dev/null)

.PHONY: all build test run bench lint format deps clean \
	services-start services-stop services-status

all: build

deps:
	scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DKL_WERROR=$(WERROR) -DKL_SANITIZE=OFF
	cmake --build $(BUILD_DIR) -j $(JOBS)

test:
	scripts/test.sh

run:
	scripts/run.sh $(ARGS)

bench:
	scripts/bench.sh

lint:
	scripts/lint.sh

format:
	clang-format -i $(C_SOURCES)

services-start:
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

services-status:
	scripts/services.sh status

clean:
	rm -rf build build-asan build-bench

# Cross-compiling lstm_ext for 64-bit Arm Linux on an x86-64 Debian machine (.ci/aarch64 uses it):
# Debian's g++-aarch64-linux-gnu (its own libc and libstdc++ in /usr/aarch64-linux-gnu), and an
# arm64 sysroot of Debian's packages (Python 3.11, its headers and the libraries it runs on) named
# by -DLSTM_EXT_SYSROOT=<folder>. Python runs under qemu-aarch64 with that sysroot as its root
# (CMake's FindPython asks the interpreter through the emulator: CMake 4.1 and later with policy
# CMP0190 set to NEW, which .ci/aarch64 passes).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT LSTM_EXT_SYSROOT)
  set(LSTM_EXT_SYSROOT "$ENV{LSTM_EXT_SYSROOT}")
endif()
if(NOT LSTM_EXT_SYSROOT)
  message(FATAL_ERROR "aarch64-toolchain.cmake: pass -DLSTM_EXT_SYSROOT=<the arm64 sysroot's folder>")
endif()
# The toolchain file is read again for every try_compile: pass the sysroot on.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LSTM_EXT_SYSROOT)

# Headers and libraries from the cross compiler's own folders and the sysroot, never the host's;
# programs from the host. Packages (pybind11, Eigen: header-only) are named by <Package>_DIR.
set(CMAKE_FIND_ROOT_PATH "${LSTM_EXT_SYSROOT}" /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Debian's Python.h includes the arm64 pyconfig.h as <aarch64-linux-gnu/python3.11/pyconfig.h>:
# the sysroot's include folder is searched after every other (it holds Python's headers alone).
set(CMAKE_CXX_FLAGS_INIT "-idirafter ${LSTM_EXT_SYSROOT}/usr/include")

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L "${LSTM_EXT_SYSROOT}")

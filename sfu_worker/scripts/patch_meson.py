"""Rewrite mediasoup's worker meson files to use Debian's system libraries.

mediasoup 3.12.x pulls openssl, libuv, libsrtp2, usrsctp, abseil, nlohmann_json
and catch2 in as meson subprojects downloaded from the internet.  This machine
has no internet access, so every ``subproject()`` is replaced with a
``dependency()`` on the matching Debian -dev package, and the test and fuzzer
targets (which need catch2 / libFuzzer) are dropped.

Usage: patch_meson.py <mediasoup worker dir>
The script is idempotent: an already patched tree is left as it is.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = "# patched for system libraries by telemed sfu_worker/scripts/patch_meson.py"

SYSTEM_DEPS = """
# System libraries (Debian 12) instead of downloaded subprojects.
openssl_dep = dependency('openssl')
nlohmann_json_dep = dependency('nlohmann_json')
libuv_dep = dependency('libuv')
libsrtp2_dep = dependency('libsrtp2')
# mediasoup includes <srtp.h>; Debian installs it under <includedir>/srtp2.
libsrtp2_include_dep = declare_dependency(
  compile_args: ['-I' + libsrtp2_dep.get_variable(pkgconfig: 'includedir') / 'srtp2'],
)
usrsctp_dep = dependency('usrsctp')
absl_container_deps = [
  dependency('absl_flat_hash_map'),
  dependency('absl_flat_hash_set'),
  dependency('absl_btree'),
  dependency('absl_inlined_vector'),
  dependency('absl_memory'),
]
absl_strings_dep = dependency('absl_strings')
absl_types_dep = dependency('absl_optional')
"""

# Replacement for ``<name>_proj.get_variable('<var>')`` expressions.
VARIABLES = {
    "absl_container_dep": "absl_container_deps",
    "absl_strings_dep": "absl_strings_dep",
    "absl_types_dep": "absl_types_dep",
    "openssl_dep": "openssl_dep",
    "nlohmann_json_dep": "nlohmann_json_dep",
    "libuv_dep": "libuv_dep",
    "libsrtp2_dep": "libsrtp2_dep, libsrtp2_include_dep",
    "usrsctp_dep": "usrsctp_dep",
}

GET_VARIABLE = re.compile(r"(\w+)_proj\.get_variable\('(\w+)'\)")
SUBPROJECT_BLOCK = re.compile(r"^\w+_proj = subproject\(\n(?:.*\n)*?\)\n", re.MULTILINE)


def _replace_variable(match: re.Match[str]) -> str:
    project, name = match.group(1), match.group(2)
    if project == "wingetopt":
        # Only used inside a Windows-only branch, which meson never evaluates here.
        return match.group(0)
    if name not in VARIABLES:
        raise SystemExit(f"patch_meson: unexpected subproject variable {name!r}")
    return VARIABLES[name]


def patch_worker(worker: Path) -> None:
    top = worker / "meson.build"
    text = top.read_text()
    if MARKER in text:
        return
    start = text.index("openssl_proj = subproject(")
    end = text.index("libwebrtc_include_directories =")
    text = text[:start] + SYSTEM_DEPS + "\n" + text[end:]
    # Static libraries of the subprojects were linked whole; the system ones
    # are shared libraries, so only libwebrtc (built here) stays in link_whole.
    link_start = text.index("link_whole = [")
    link_end = text.index("]", link_start)
    text = text[:link_start] + "link_whole = [\n  libwebrtc,\n" + text[link_end:]
    # Drop unit-test and fuzzer targets (catch2 / libFuzzer are not needed).
    text = text[: text.index("test_sources = [")]
    text = GET_VARIABLE.sub(_replace_variable, text)
    top.write_text(MARKER + "\n" + text)

    webrtc = worker / "deps" / "libwebrtc" / "meson.build"
    wtext = webrtc.read_text()
    wtext = SUBPROJECT_BLOCK.sub("", wtext)
    wtext = GET_VARIABLE.sub(_replace_variable, wtext)
    webrtc.write_text(MARKER + "\n" + wtext)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: patch_meson.py <mediasoup worker dir>")
    patch_worker(Path(sys.argv[1]))

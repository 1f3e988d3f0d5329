"""Rewrite an ELF executable's RUNPATH (or RPATH) in place, for its copy inside the jail.

An interpreter built with a shared libpython (pyenv's, say) finds that library through a RUNPATH
naming its host prefix (`/root/.pyenv/versions/3.11.7/lib`). Inside the jail the prefix is
mounted at a neutral path, where that host path does not exist: the copy the jail runs gets an
$ORIGIN-relative RUNPATH instead (`$ORIGIN/../lib`), which the dynamic loader resolves from
wherever the binary is. The new string is written over the old one in .dynstr, NUL-padded, so it
must not be longer (an absolute host path always is longer than its $ORIGIN form).

Pure: bytes in, bytes out. Only 64-bit little-endian ELF (x86_64, aarch64) is handled.
"""

from __future__ import annotations

import os
import struct

DT_NULL, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 5, 15, 29
PT_LOAD, PT_DYNAMIC = 1, 2


class ElfError(ValueError):
    pass


def runpath(data: bytes) -> str | None:
    """The binary's RUNPATH (or RPATH), or None when it has neither."""
    found = _locate(data)
    return None if found is None else found[1]


def relocate_runpath(data: bytes, binary_dir: str) -> bytes:
    """`data` with each absolute RUNPATH entry rewritten relative to $ORIGIN, where the binary
    lives in `binary_dir` on the host (the entries keep pointing at the same files when the
    tree holding both is mounted elsewhere). Unchanged when there is no RUNPATH."""
    found = _locate(data)
    if found is None:
        return data
    offset, old = found
    entries = []
    for entry in old.split(":"):
        if entry.startswith("/"):
            rel = os.path.relpath(entry, binary_dir)
            entry = "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
        entries.append(entry)
    new = ":".join(entries).encode()
    if len(new) > len(old.encode()):
        raise ElfError(f"the relocated RUNPATH {new.decode()!r} is longer than {old!r}")
    patched = bytearray(data)
    patched[offset : offset + len(old.encode())] = new.ljust(len(old.encode()), b"\0")
    return bytes(patched)


def _locate(data: bytes) -> tuple[int, str] | None:
    """(file offset, string) of the RUNPATH (or RPATH) string, or None."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []  # (vaddr, file offset, file size)
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return None
    strtab_vaddr = None
    path_offset = None
    for at in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == DT_NULL:
            break
        if tag == DT_STRTAB:
            strtab_vaddr = value
        elif tag in (DT_RUNPATH, DT_RPATH):
            path_offset = value
    if path_offset is None:
        return None
    if strtab_vaddr is None:
        raise ElfError("RUNPATH without a string table")
    for vaddr, offset, size in loads:
        if vaddr <= strtab_vaddr < vaddr + size:
            start = offset + (strtab_vaddr - vaddr) + path_offset
            end = data.index(b"\0", start)
            return start, data[start:end].decode()
    raise ElfError("the string table is in no loaded segment")

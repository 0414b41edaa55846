"""Read float32 arrays out of a shared library's exported data symbols, as bytes, without loading it.

libfacedetection compiles its weights into the library as global arrays (one per tensor).
The dynamic symbol table (.dynsym, names in .dynstr) gives each array's address and size;
the section that holds the address gives its place in the file. Nothing is executed.
"""
from __future__ import annotations

import struct

import numpy as np

SHT_NOBITS = 8
SHT_DYNSYM = 11
_SECTION = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize
_SYMBOL = struct.Struct("<IBBHQQ")  # name info other shndx value size


class ElfError(ValueError):
    """The file is not a readable 64-bit little-endian ELF with the expected symbols."""


def _cstr(table: bytes, offset: int) -> str:
    return table[offset:table.index(b"\0", offset)].decode("ascii", "replace")


def read_float_arrays(data: bytes, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """The exported float32 arrays named in `sizes`, each checked to hold exactly that many floats."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shentsize != _SECTION.size or shoff + shnum * shentsize > len(data):
        raise ElfError("section header table is missing or truncated")
    sections = [_SECTION.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    dynsym = [s for s in sections if s[1] == SHT_DYNSYM]
    if len(dynsym) != 1:
        raise ElfError("no dynamic symbol table")
    _, _, _, _, sym_off, sym_size, link, _, _, _ = dynsym[0]
    strtab_hdr = sections[link]
    strtab = data[strtab_hdr[4]:strtab_hdr[4] + strtab_hdr[5]]
    found: dict[str, np.ndarray] = {}
    for off in range(sym_off, sym_off + sym_size, _SYMBOL.size):
        st_name, _, _, shndx, value, size = _SYMBOL.unpack_from(data, off)
        name = _cstr(strtab, st_name)
        if name not in sizes:
            continue
        if size != 4 * sizes[name]:
            raise ElfError(f"{name}: {size} bytes, the architecture needs {sizes[name]} floats")
        if not 0 < shndx < len(sections) or sections[shndx][1] == SHT_NOBITS:
            raise ElfError(f"{name}: not stored in the file")
        _, _, _, addr, sec_off, sec_size, *_ = sections[shndx]
        start = sec_off + value - addr
        if not (addr <= value and value + size <= addr + sec_size and start + size <= len(data)):
            raise ElfError(f"{name}: lies outside its section")
        found[name] = np.frombuffer(data, "<f4", sizes[name], start).copy()
    missing = sorted(set(sizes) - set(found))
    if missing:
        raise ElfError(f"{len(missing)} arrays missing, e.g. {missing[0]}")
    return found

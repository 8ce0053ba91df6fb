//! Struct member offsets from the kernel's BTF, so that eBPF programs can
//! read kernel structs on any kernel without CO-RE relocations (which Rust
//! eBPF lacks): user space looks the offsets up at start-up and hands them
//! to the programs as globals.
//!
//! Only what that needs is parsed: the type section's layout and struct and
//! union members. aya's own BTF parser keeps member offsets private.

use std::{collections::HashMap, path::Path};

/// Default location of the running kernel's BTF.
pub const SYSFS_BTF: &str = "/sys/kernel/btf/vmlinux";

/// First two bytes of every BTF blob, in the producer's byte order.
pub const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not BTF: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("struct {strukt} has no member {member} in the kernel's BTF")]
    NoMember { strukt: String, member: String },
}

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Offset in bits from the start of the enclosing type.
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    kind: u32,
    name_off: u32,
    /// Referenced type id for typedef, const, volatile, restrict, type tag.
    target: u32,
    members: Vec<Member>,
}

/// The parsed parts of a BTF blob.
pub struct KernelBtf {
    strings: Vec<u8>,
    /// Index 0 is the void type; ids start at 1.
    types: Vec<Type>,
    structs_by_name: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]])).ok_or(BtfError::Malformed("truncated"))
}

impl KernelBtf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|m| u16::from_ne_bytes([m[0], m[1]]));
        if magic != Some(BTF_MAGIC) {
            return Err(BtfError::Malformed("bad magic (or foreign byte order)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let types_bytes =
            data.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or(BtfError::Malformed("type section"))?;
        let strings =
            data.get(hdr_len + str_off..hdr_len + str_off + str_len).ok_or(BtfError::Malformed("string section"))?;

        let mut types = vec![Type { kind: 0, name_off: 0, target: 0, members: Vec::new() }];
        let mut pos = 0;
        while pos < types_bytes.len() {
            let name_off = u32_at(types_bytes, pos)?;
            let info = u32_at(types_bytes, pos + 4)?;
            let size_or_type = u32_at(types_bytes, pos + 8)?;
            pos += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut ty = Type { kind, name_off, target: 0, members: Vec::new() };
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => pos += 4,
                KIND_ARRAY => pos += 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let at = pos + i * 12;
                        let raw = u32_at(types_bytes, at + 8)?;
                        let bit_offset = if kind_flag { raw & 0x00ff_ffff } else { raw };
                        ty.members.push(Member {
                            name_off: u32_at(types_bytes, at)?,
                            type_id: u32_at(types_bytes, at + 4)?,
                            bit_offset,
                        });
                    }
                    pos += vlen * 12;
                }
                KIND_ENUM | KIND_FUNC_PROTO => pos += vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => pos += vlen * 12,
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => ty.target = size_or_type,
                _ => {}
            }
            types.push(ty);
        }
        let mut btf = Self { strings: strings.to_vec(), types, structs_by_name: HashMap::new() };
        for (id, ty) in btf.types.iter().enumerate() {
            if ty.kind == KIND_STRUCT && ty.name_off != 0 {
                let name = btf.name(ty.name_off).to_owned();
                // The first definition wins; later ones are duplicates.
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follow typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(t.kind, KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) =>
                {
                    id = t.target
                }
                _ => break,
            }
        }
        id
    }

    /// Bit offset of a named member of struct/union `id`, looking inside
    /// anonymous struct and union members as C does.
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        let ty = self.types.get(id as usize)?;
        for m in &ty.members {
            if m.name_off != 0 && self.name(m.name_off) == member {
                return Some((m.bit_offset, m.type_id));
            }
        }
        if depth > 8 {
            return None;
        }
        for m in ty.members.iter().filter(|m| m.name_off == 0) {
            let inner = self.resolve(m.type_id);
            if let Some((off, t)) = self.find_member(inner, member, depth + 1) {
                return Some((m.bit_offset + off, t));
            }
        }
        None
    }

    /// Bit offset of `path` inside `struct strukt` (for bitfields).
    pub fn member_bit_offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = *self.structs_by_name.get(strukt).ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let mut bits = 0;
        for part in path.split('.') {
            let (off, ty) = self
                .find_member(id, part, 0)
                .ok_or_else(|| BtfError::NoMember { strukt: strukt.to_owned(), member: path.to_owned() })?;
            bits += off;
            id = self.resolve(ty);
        }
        Ok(bits)
    }

    /// Byte offset of `path` (a member name, or `a.b.c` through nested
    /// structs) inside `struct strukt`.
    pub fn member_offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        Ok(self.member_bit_offset(strukt, path)? / 8)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Offsets agree with bpftool's reading of the running kernel's BTF.
    #[test]
    fn offsets_match_bpftool() {
        let path = Path::new(SYSFS_BTF);
        let btf = KernelBtf::from_file(path).expect("this kernel has BTF");
        let raw = Command::new("bpftool")
            .args(["btf", "dump", "file", SYSFS_BTF, "format", "raw"])
            .output()
            .expect("bpftool is installed by cargo xtask setup");
        assert!(raw.status.success());
        let text = String::from_utf8_lossy(&raw.stdout);
        // "[123] STRUCT 'task_struct' size=… vlen=…" then "\t'pid' type_id=… bits_offset=…".
        let mut lines = text.lines().skip_while(|l| !l.contains("STRUCT 'task_struct' size="));
        assert!(lines.next().is_some(), "bpftool lists no task_struct");
        let mut checked = 0;
        for line in lines.take_while(|l| l.starts_with('\t')) {
            let Some(name) = line.split('\'').nth(1) else { continue };
            if !["pid", "tgid", "__state", "comm", "flags"].contains(&name) {
                continue;
            }
            let bits: u32 =
                line.split("bits_offset=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
            assert_eq!(btf.member_offset("task_struct", name).unwrap(), bits / 8, "task_struct.{name}");
            checked += 1;
        }
        assert_eq!(checked, 5, "expected pid, tgid, __state, comm and flags in task_struct");
        // Nested paths and clear errors.
        assert!(btf.member_offset("task_struct", "se.sum_exec_runtime").is_ok());
        assert!(matches!(btf.member_offset("task_struct", "no_such_member"), Err(BtfError::NoMember { .. })));
        assert!(matches!(btf.member_offset("no_such_struct", "x"), Err(BtfError::NoStruct(_))));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(KernelBtf::parse(b"definitely not btf"), Err(BtfError::Malformed(_))));
    }
}

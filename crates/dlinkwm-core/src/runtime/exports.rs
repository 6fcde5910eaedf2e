//! What a module exports, classified once per version: the ABI machinery, and the entries.

use std::collections::HashMap;

use dlinkwm_abi::{export, import};
use wasmtime::{ExternType, FuncType, Module, ModuleExport, ValType};

use crate::error::{Error, Result};
use crate::names::NameKey;

/// How a plugin is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginKind {
    /// A DlinkWM ABI plugin: it imports from the `dlinkwm` module or declares an ABI version.
    Abi,
    /// A plain module: only its `() -> ()` exports can be called (the original DlinkWM style).
    Plain,
    /// A WebAssembly component of the WIT world `dlinkwm:plugin/plugin` (`wit/plugin.wit`),
    /// with WASI preview 2.
    Component,
    /// An Extism plugin (it imports `extism:host/env`): its `() -> i32` exports are called
    /// with DlinkWM's implementation of the Extism kernel (docs/extism.md).
    Extism,
}

/// How an entry is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// `(in_ptr: i32, in_len: i32, format: i32) -> i32`: bytes in, bytes or an error out.
    Abi,
    /// `() -> ()`: no input, no output.
    Plain,
    /// An Extism plugin function, `() -> i32` (or `() -> ()`): input, output and error travel
    /// through the Extism kernel.
    Extism,
}

/// An entry: an export that can be called by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The export's name.
    pub name: String,
    /// How it is called.
    pub kind: EntryKind,
}

pub(crate) struct EntryExport {
    pub(crate) name: String,
    pub(crate) kind: EntryKind,
    /// The core module's export; components call entries by name.
    pub(crate) export: Option<ModuleExport>,
}

/// The exports of one module version, resolved once so calls never look a name up twice.
pub(crate) struct ExportTable {
    pub(crate) kind: PluginKind,
    pub(crate) entries: Vec<EntryExport>,
    /// The entries' name keys, in the same order.
    keys: Vec<NameKey>,
    by_name: HashMap<String, usize>,
    pub(crate) memory: Option<ModuleExport>,
    pub(crate) alloc: Option<ModuleExport>,
    pub(crate) initialize: Option<ModuleExport>,
    pub(crate) abi_version: Option<ModuleExport>,
    pub(crate) state_save: Option<ModuleExport>,
    pub(crate) state_restore: Option<ModuleExport>,
    /// Extism plugins: `__wasm_call_ctors`, run instead of `_initialize` when exported.
    pub(crate) call_ctors: Option<ModuleExport>,
    /// Extism plugins: GHC's `hs_init(argc, argv)`, run after `_initialize`.
    pub(crate) hs_init: Option<ModuleExport>,
}

fn is_abi_entry(ty: &FuncType) -> bool {
    let params: Vec<ValType> = ty.params().collect();
    let results: Vec<ValType> = ty.results().collect();
    params.len() == 3
        && params.iter().all(|param| matches!(param, ValType::I32))
        && results.len() == 1
        && matches!(results[0], ValType::I32)
}

fn is_plain_entry(ty: &FuncType) -> bool {
    ty.params().len() == 0 && ty.results().len() == 0
}

fn is_extism_entry(ty: &FuncType) -> bool {
    ty.params().len() == 0
        && (ty.results().len() == 0
            || (ty.results().len() == 1
                && ty.results().all(|result| matches!(result, ValType::I32))))
}

impl ExportTable {
    pub(crate) fn new(plugin: &str, module: &Module) -> Result<Self> {
        let imports_abi = module
            .imports()
            .any(|import| import.module() == import::MODULE);
        let declares_version = module.get_export(export::ABI_VERSION).is_some();
        let imports_extism = module
            .imports()
            .any(|import| import.module() == crate::runtime::extism::ENV_MODULE);
        let kind = if imports_extism && !imports_abi {
            PluginKind::Extism
        } else if imports_abi || declares_version {
            PluginKind::Abi
        } else {
            PluginKind::Plain
        };
        let index = |name: &str| module.get_export_index(name);
        let func_export = |name: &str, check: fn(&FuncType) -> bool| match module.get_export(name) {
            Some(ExternType::Func(ty)) if check(&ty) => module.get_export_index(name),
            _ => None,
        };
        let table = ExportTable {
            kind,
            entries: Vec::new(),
            keys: Vec::new(),
            by_name: HashMap::new(),
            memory: match module.get_export(export::MEMORY) {
                Some(ExternType::Memory(_)) => index(export::MEMORY),
                _ => None,
            },
            alloc: func_export(export::ALLOC, |ty| {
                ty.params().len() == 1 && ty.results().len() == 1
            }),
            initialize: func_export(export::INITIALIZE, is_plain_entry),
            abi_version: func_export(export::ABI_VERSION, |ty| {
                ty.params().len() == 0 && ty.results().len() == 1
            }),
            state_save: func_export(export::STATE_SAVE, is_abi_entry),
            state_restore: func_export(export::STATE_RESTORE, is_abi_entry),
            call_ctors: func_export(crate::runtime::extism::CALL_CTORS, is_plain_entry),
            hs_init: func_export(crate::runtime::extism::HS_INIT, |ty| {
                ty.params().len() == 2
                    && ty.params().all(|param| matches!(param, ValType::I32))
                    && ty.results().len() == 0
            }),
        };
        if kind == PluginKind::Abi {
            let required = [
                (export::ABI_VERSION, table.abi_version.is_some()),
                (export::MEMORY, table.memory.is_some()),
                (export::ALLOC, table.alloc.is_some()),
            ];
            if let Some((missing, _)) = required.iter().find(|(_, present)| !present) {
                return Err(Error::ExportMissing {
                    plugin: plugin.to_owned(),
                    export: (*missing).to_owned(),
                });
            }
        }
        let mut table = table;
        for export in module.exports() {
            let name = export.name();
            let ExternType::Func(ty) = export.ty() else {
                continue;
            };
            // (Extism calls `_start`, a Go command's `main`, as a function.)
            if kind != PluginKind::Extism && export::is_reserved(name) {
                continue;
            }
            let kind = if kind == PluginKind::Extism {
                // Extism calls any export of no parameters and no result or an `i32` one, but
                // the initialisers run once per instance, never as a call.
                if crate::runtime::extism::is_initializer(name) || !is_extism_entry(&ty) {
                    continue;
                }
                EntryKind::Extism
            } else if kind == PluginKind::Abi && is_abi_entry(&ty) {
                EntryKind::Abi
            } else if is_plain_entry(&ty) {
                EntryKind::Plain
            } else {
                continue;
            };
            let Some(handle) = module.get_export_index(name) else {
                continue;
            };
            table.push(EntryExport {
                name: name.to_owned(),
                kind,
                export: Some(handle),
            });
        }
        Ok(table)
    }

    /// The table of a component whose `entries` export answered `names`.
    pub(crate) fn for_component(names: Vec<String>) -> Self {
        let mut table = Self {
            kind: PluginKind::Component,
            entries: Vec::with_capacity(names.len()),
            keys: Vec::with_capacity(names.len()),
            by_name: HashMap::with_capacity(names.len()),
            memory: None,
            alloc: None,
            initialize: None,
            abi_version: None,
            state_save: None,
            state_restore: None,
            call_ctors: None,
            hs_init: None,
        };
        for name in names {
            if !table.by_name.contains_key(&name) {
                table.push(EntryExport {
                    name,
                    kind: EntryKind::Abi,
                    export: None,
                });
            }
        }
        table
    }

    fn push(&mut self, entry: EntryExport) {
        self.by_name.insert(entry.name.clone(), self.entries.len());
        self.keys
            .push(NameKey::of(&entry.name).unwrap_or(NameKey::LONG));
        self.entries.push(entry);
    }

    /// Whether the plugin can hand its state over on a reload (components always export it).
    /// (An Extism plugin hands over its vars.)
    pub(crate) fn saves_state(&self) -> bool {
        matches!(self.kind, PluginKind::Component | PluginKind::Extism) || self.state_save.is_some()
    }

    /// Whether the plugin can take over state on a reload.
    pub(crate) fn restores_state(&self) -> bool {
        matches!(self.kind, PluginKind::Component | PluginKind::Extism)
            || self.state_restore.is_some()
    }

    /// The index of entry `name`, or the error listing the entries there are.
    #[inline(always)]
    pub(crate) fn entry(&self, plugin: &str, name: &str) -> Result<usize> {
        // A plugin has a handful of entries: comparing keys beats hashing the name.
        let found = match NameKey::of(name) {
            Some(key) if self.keys.len() <= 16 => self.keys.iter().position(|k| *k == key),
            _ => self.by_name.get(name).copied(),
        };
        match found {
            Some(index) => Ok(index),
            None => Err(self.not_found(plugin, name)),
        }
    }

    #[cold]
    fn not_found(&self, plugin: &str, name: &str) -> Error {
        Error::EntryNotFound {
            plugin: plugin.to_owned(),
            entry: name.to_owned(),
            available: self.entry_names(),
        }
    }

    pub(crate) fn entry_names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|entry| entry.name.clone())
            .collect()
    }

    pub(crate) fn entry_infos(&self) -> Vec<EntryInfo> {
        self.entries
            .iter()
            .map(|entry| EntryInfo {
                name: entry.name.clone(),
                kind: entry.kind,
            })
            .collect()
    }
}

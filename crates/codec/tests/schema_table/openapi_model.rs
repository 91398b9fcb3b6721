//! Reads the k8s-openapi serde models: for one type, its fields with their exact JSON names (from
//! the `"podIP" => Field::Key_pod_ip` arms of its hand-expanded `Deserialize` impl), whether each is
//! optional (`Option<..>`), and the Rust shape of each; plus every `impl crate::Resource`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use syn::visit::Visit;
use syn::{Fields, GenericArgument, Item, PathArguments, Type};

use crate::protobuf_model::{full_name, string_constants};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    String,
    Int32,
    Int64,
    Bool,
    Double,
    Bytes,
    List(Box<Shape>),
    Map(Box<Shape>),
    /// Another k8s-openapi type, by full name (`api.core.v1.PodSpec`).
    Named(String),
    JsonValue,
}

#[derive(Clone, Debug)]
pub struct OpenapiField {
    pub json_name: String,
    pub optional: bool,
    pub shape: Shape,
}

#[derive(Clone, Debug)]
pub enum OpenapiType {
    Struct(Vec<OpenapiField>),
    /// Enums and newtypes (`IntOrString`, `Time`, `Quantity`, ...): hand-written serde, which the
    /// codec handles as special messages.
    Opaque,
}

pub struct OpenapiModel {
    root: PathBuf,
    /// Module path (dot-joined) to (type name to file stem).
    modules: BTreeMap<String, BTreeMap<String, String>>,
}

impl OpenapiModel {
    pub fn new(root: &Path) -> anyhow::Result<OpenapiModel> {
        let mut model = OpenapiModel {
            root: root.to_owned(),
            modules: BTreeMap::new(),
        };
        model.index_dir(root)?;
        if model.modules.is_empty() {
            bail!("no k8s-openapi modules under {}", root.display());
        }
        Ok(model)
    }

    fn index_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mod_file = dir.join("mod.rs");
        if mod_file.exists() {
            let text = std::fs::read_to_string(&mod_file)?;
            let mut names = BTreeMap::new();
            for line in text.lines() {
                // `pub use self::pod_status::PodStatus;`
                let Some(rest) = line
                    .trim()
                    .strip_prefix("pub use self::")
                    .and_then(|rest| rest.strip_suffix(';'))
                else {
                    continue;
                };
                if let Some((stem, name)) = rest.split_once("::")
                    && !name.contains("::")
                {
                    names.insert(name.to_owned(), stem.to_owned());
                }
            }
            self.modules.insert(self.module_of(dir)?.join("."), names);
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                self.index_dir(&path)?;
            }
        }
        Ok(())
    }

    fn module_of(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        Ok(dir
            .strip_prefix(&self.root)?
            .components()
            .map(|component| component.as_os_str().to_string_lossy().into_owned())
            .collect())
    }

    /// The file defining a type. Names are compared case-insensitively because k8s-pb
    /// re-cases a few (`JsonSchemaProps` for `JSONSchemaProps`).
    fn file_of(&self, module: &[String], name: &str) -> Option<(PathBuf, String)> {
        let names = self.modules.get(&module.join("."))?;
        let (found, stem) = names.get_key_value(name).or_else(|| {
            let mut matches = names
                .iter()
                .filter(|(candidate, _)| candidate.eq_ignore_ascii_case(name));
            let only = matches.next()?;
            matches.next().is_none().then_some(only)
        })?;
        let mut path = self.root.clone();
        path.extend(module.iter().cloned());
        Some((path.join(format!("{stem}.rs")), found.clone()))
    }

    /// The k8s-openapi type with the same module path and name as a protobuf message, if any.
    pub fn find(&self, module: &[String], name: &str) -> anyhow::Result<Option<OpenapiType>> {
        let Some((path, openapi_name)) = self.file_of(module, name) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file = syn::parse_file(&text).with_context(|| format!("parsing {}", path.display()))?;
        read_type(&file, &openapi_name).with_context(|| format!("in {}", path.display()))
    }

    /// Every `impl crate::Resource`: full type name to (apiVersion, kind).
    pub fn resources(&self) -> anyhow::Result<BTreeMap<String, (String, String)>> {
        let mut resources = BTreeMap::new();
        for (module, names) in &self.modules {
            let module = module
                .split('.')
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>();
            for name in names.keys() {
                let Some((path, _)) = self.file_of(&module, name) else {
                    continue;
                };
                let text = std::fs::read_to_string(&path)?;
                if !text.contains("impl crate::Resource for") {
                    continue;
                }
                let file = syn::parse_file(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
                for item in &file.items {
                    let Item::Impl(item) = item else { continue };
                    let is_resource = item.trait_.as_ref().is_some_and(|(_, path, _)| {
                        path.segments.len() == 2 && path.segments[1].ident == "Resource"
                    });
                    if !is_resource {
                        continue;
                    }
                    let constants = string_constants(item);
                    if let (Some(api_version), Some(kind)) =
                        (constants.get("API_VERSION"), constants.get("KIND"))
                    {
                        resources.insert(
                            full_name(&module, name),
                            (api_version.clone(), kind.clone()),
                        );
                    }
                }
            }
        }
        Ok(resources)
    }
}

fn read_type(file: &syn::File, name: &str) -> anyhow::Result<Option<OpenapiType>> {
    let mut json_names = JsonNames::default();
    json_names.visit_file(file);
    for item in &file.items {
        match item {
            Item::Struct(item) if item.ident == name => {
                let Fields::Named(named) = &item.fields else {
                    return Ok(Some(OpenapiType::Opaque));
                };
                let mut fields = Vec::new();
                for field in &named.named {
                    let rust_name = field
                        .ident
                        .as_ref()
                        .context("unnamed field")?
                        .to_string()
                        .trim_start_matches("r#")
                        .to_owned();
                    let json_name = json_names
                        .by_rust_name
                        .get(&rust_name)
                        .with_context(|| format!("no JSON name for field {rust_name}"))?
                        .clone();
                    let (optional, ty) = match unwrap_generic(&field.ty, "Option") {
                        Some(inner) => (true, inner),
                        None => (false, &field.ty),
                    };
                    let shape = shape_of(ty).with_context(|| format!("field {rust_name}"))?;
                    fields.push(OpenapiField {
                        json_name,
                        optional,
                        shape,
                    });
                }
                return Ok(Some(OpenapiType::Struct(fields)));
            }
            Item::Enum(item) if item.ident == name => return Ok(Some(OpenapiType::Opaque)),
            _ => {}
        }
    }
    Ok(None)
}

/// Collects `"jsonName" => Field::Key_rust_name` match arms.
#[derive(Default)]
struct JsonNames {
    by_rust_name: BTreeMap<String, String>,
}

impl<'ast> Visit<'ast> for JsonNames {
    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if let syn::Pat::Lit(syn::PatLit {
            lit: syn::Lit::Str(literal),
            ..
        }) = &arm.pat
            && let syn::Expr::Path(body) = arm.body.as_ref()
            && let Some(last) = body.path.segments.last()
            && let Some(rust_name) = last.ident.to_string().strip_prefix("Key_")
        {
            self.by_rust_name
                .insert(rust_name.to_owned(), literal.value());
        }
        syn::visit::visit_arm(self, arm);
    }
}

fn unwrap_generic<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let Type::Path(type_path) = ty else {
        return None;
    };
    let last = type_path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    generic_types(last).first().copied()
}

fn generic_types(segment: &syn::PathSegment) -> Vec<&Type> {
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return Vec::new();
    };
    arguments
        .args
        .iter()
        .filter_map(|argument| match argument {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        })
        .collect()
}

fn shape_of(ty: &Type) -> anyhow::Result<Shape> {
    let Type::Path(type_path) = ty else {
        bail!("type is not a path");
    };
    let segments = type_path
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect::<Vec<_>>();
    let last = type_path.path.segments.last().context("empty type path")?;
    let generics = generic_types(last);
    let joined = segments.join("::");
    Ok(match (joined.as_str(), generics.as_slice()) {
        ("std::string::String", []) => Shape::String,
        ("i32", []) => Shape::Int32,
        ("i64", []) => Shape::Int64,
        ("bool", []) => Shape::Bool,
        ("f64", []) => Shape::Double,
        ("crate::ByteString", []) => Shape::Bytes,
        ("crate::serde_json::Value", []) => Shape::JsonValue,
        ("std::vec::Vec", [inner]) => Shape::List(Box::new(shape_of(inner)?)),
        ("std::boxed::Box", [inner]) => shape_of(inner)?,
        ("std::collections::BTreeMap", [key, value]) => {
            if shape_of(key)? != Shape::String {
                bail!("map with a non-string key");
            }
            Shape::Map(Box::new(shape_of(value)?))
        }
        (_, []) if segments.first().is_some_and(|first| first == "crate") => {
            Shape::Named(segments[1..].join("."))
        }
        _ => bail!("unrecognised type {joined}"),
    })
}

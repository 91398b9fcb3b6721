//! Reads the prost messages that k8s-pb generated from the Kubernetes `.proto` files: every
//! `#[derive(::prost::Message)]` struct with its `#[prost(..., tag = "N")]` fields, and every
//! `impl crate::Resource` (apiVersion and kind of a top-level object).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use syn::{Fields, GenericArgument, Item, LitStr, PathArguments, Type};

/// Scalar protobuf types the Kubernetes protos use. The generator fails on any other, so a new
/// one is noticed rather than mis-decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    String,
    Int32,
    Int64,
    Bool,
    Double,
    Bytes,
}

impl Scalar {
    pub fn table_name(self) -> &'static str {
        match self {
            Scalar::String => "string",
            Scalar::Int32 => "int32",
            Scalar::Int64 => "int64",
            Scalar::Bool => "bool",
            Scalar::Double => "double",
            Scalar::Bytes => "bytes",
        }
    }

    fn from_prost(name: &str) -> Option<Scalar> {
        Some(match name {
            "string" => Scalar::String,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "bool" => Scalar::Bool,
            "double" => Scalar::Double,
            "bytes" => Scalar::Bytes,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    Scalar(Scalar),
    /// Full message name, module path and struct name joined by dots.
    Message(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cardinality {
    Single,
    Repeated,
    /// `map<string, V>`; Kubernetes protos only use string keys (checked while parsing).
    Map,
}

#[derive(Clone, Debug)]
pub struct ProtobufField {
    pub rust_name: String,
    pub tag: u32,
    pub cardinality: Cardinality,
    pub value: ValueType,
}

#[derive(Clone, Debug)]
pub struct ProtobufMessage {
    pub module: Vec<String>,
    pub name: String,
    pub fields: Vec<ProtobufField>,
}

#[derive(Default)]
pub struct ProtobufModel {
    /// Keyed by full name (`api.apps.v1.Deployment`).
    pub messages: BTreeMap<String, ProtobufMessage>,
    /// Full message name to (apiVersion, kind), from `impl crate::Resource`.
    pub resources: BTreeMap<String, (String, String)>,
}

pub fn full_name(module: &[String], name: &str) -> String {
    let mut parts = module.to_vec();
    parts.push(name.to_owned());
    parts.join(".")
}

pub fn read(src: &Path) -> anyhow::Result<ProtobufModel> {
    let mut model = ProtobufModel::default();
    read_dir(src, src, &mut model)?;
    if model.messages.is_empty() {
        bail!("no prost messages found under {}", src.display());
    }
    Ok(model)
}

fn read_dir(root: &Path, dir: &Path, model: &mut ProtobufModel) -> anyhow::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|entry| entry.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            read_dir(root, &path, model)?;
            continue;
        }
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        let mut module = path
            .parent()
            .context("file without parent")?
            .strip_prefix(root)?
            .components()
            .map(|component| component.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        let stem = path
            .file_stem()
            .context("file without stem")?
            .to_string_lossy();
        if stem != "mod" && stem != "lib" {
            module.push(stem.into_owned());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file = syn::parse_file(&text).with_context(|| format!("parsing {}", path.display()))?;
        read_items(&file.items, &module, model)
            .with_context(|| format!("in {}", path.display()))?;
    }
    Ok(())
}

fn read_items(items: &[Item], module: &[String], model: &mut ProtobufModel) -> anyhow::Result<()> {
    for item in items {
        match item {
            Item::Struct(item) if derives(&item.attrs, "Message") => {
                let message = read_message(item, module)
                    .with_context(|| format!("in message {}", item.ident))?;
                model
                    .messages
                    .insert(full_name(module, &message.name), message);
            }
            Item::Enum(item)
                if derives(&item.attrs, "Oneof") || derives(&item.attrs, "Enumeration") =>
            {
                bail!(
                    "{} uses a protobuf oneof or enum, which the codec does not support",
                    item.ident
                );
            }
            Item::Impl(item) => read_resource_impl(item, module, model)?,
            Item::Mod(item) => {
                if let Some((_, content)) = &item.content {
                    let mut inner = module.to_vec();
                    inner.push(item.ident.to_string());
                    read_items(content, &inner, model)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn derives(attrs: &[syn::Attribute], wanted: &str) -> bool {
    attrs.iter().any(|attr| {
        if !attr.path().is_ident("derive") {
            return false;
        }
        let mut found = false;
        // A parse failure just means "not a derive we recognise".
        let _ = attr.parse_nested_meta(|meta| {
            if meta
                .path
                .segments
                .last()
                .is_some_and(|segment| segment.ident == wanted)
            {
                found = true;
            }
            Ok(())
        });
        found
    })
}

fn read_message(item: &syn::ItemStruct, module: &[String]) -> anyhow::Result<ProtobufMessage> {
    let Fields::Named(named) = &item.fields else {
        bail!("prost message without named fields");
    };
    let mut fields = Vec::new();
    for field in &named.named {
        let ident = field.ident.as_ref().context("unnamed field")?;
        let rust_name = ident.to_string().trim_start_matches("r#").to_owned();
        let attr = field
            .attrs
            .iter()
            .find(|attr| attr.path().is_ident("prost"))
            .with_context(|| format!("field {rust_name} without #[prost]"))?;
        let parsed = parse_prost_attr(attr).with_context(|| format!("field {rust_name}"))?;
        let value = match parsed.value {
            ProstValue::Scalar(scalar) => ValueType::Scalar(scalar),
            ProstValue::Message => {
                ValueType::Message(resolve_message_type(&field.ty, module, parsed.cardinality)?)
            }
        };
        fields.push(ProtobufField {
            rust_name,
            tag: parsed.tag,
            cardinality: parsed.cardinality,
            value,
        });
    }
    fields.sort_by_key(|field| field.tag);
    Ok(ProtobufMessage {
        module: module.to_vec(),
        name: item.ident.to_string(),
        fields,
    })
}

enum ProstValue {
    Scalar(Scalar),
    Message,
}

struct ProstAttr {
    tag: u32,
    cardinality: Cardinality,
    value: ProstValue,
}

fn parse_prost_attr(attr: &syn::Attribute) -> anyhow::Result<ProstAttr> {
    let mut tag = None;
    let mut cardinality = Cardinality::Single;
    let mut value = None;
    let mut unsupported = Vec::new();
    attr.parse_nested_meta(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "tag" => {
                let literal: LitStr = meta.value()?.parse()?;
                tag = Some(literal.value());
            }
            "optional" | "required" | "boxed" => {}
            "repeated" => cardinality = Cardinality::Repeated,
            "packed" => {
                let _: LitStr = meta.value()?.parse()?;
            }
            "message" => value = Some(ProstValue::Message),
            "bytes" => {
                let literal: LitStr = meta.value()?.parse()?;
                if literal.value() != "vec" {
                    unsupported.push(format!("bytes = {:?}", literal.value()));
                }
                value = Some(ProstValue::Scalar(Scalar::Bytes));
            }
            "btree_map" | "map" | "hash_map" => {
                let literal: LitStr = meta.value()?.parse()?;
                cardinality = Cardinality::Map;
                let spec = literal.value();
                let (key_type, value_type) = spec.split_once(',').unwrap_or((spec.as_str(), ""));
                if key_type.trim() != "string" {
                    unsupported.push(format!("map key {key_type}"));
                }
                value = match value_type.trim() {
                    "message" => Some(ProstValue::Message),
                    other => match Scalar::from_prost(other) {
                        Some(scalar) => Some(ProstValue::Scalar(scalar)),
                        None => {
                            unsupported.push(format!("map value {other}"));
                            None
                        }
                    },
                };
            }
            other => match Scalar::from_prost(other) {
                Some(scalar) => value = Some(ProstValue::Scalar(scalar)),
                None => unsupported.push(other.to_owned()),
            },
        }
        Ok(())
    })?;
    if !unsupported.is_empty() {
        bail!("unsupported prost attribute parts: {unsupported:?}");
    }
    let tag = tag
        .context("no tag")?
        .parse::<u32>()
        .context("tag is not a number")?;
    let value = value.context("no value type")?;
    Ok(ProstAttr {
        tag,
        cardinality,
        value,
    })
}

/// Finds the message type of a field: the type inside `Option<..>`, `Vec<..>`, `Box<..>`, or the
/// value type of a `BTreeMap<String, ..>`, resolved against the file's module path.
fn resolve_message_type(
    ty: &Type,
    module: &[String],
    cardinality: Cardinality,
) -> anyhow::Result<String> {
    let path = innermost_path(ty, cardinality == Cardinality::Map)?;
    let mut resolved = module.to_vec();
    let mut segments = path.segments.iter().peekable();
    if path.leading_colon.is_some() {
        bail!("message type is an absolute path outside the crate");
    }
    if segments
        .peek()
        .is_some_and(|segment| segment.ident == "crate")
    {
        resolved.clear();
        segments.next();
    }
    let mut names = Vec::new();
    for segment in segments {
        if segment.ident == "super" {
            if !names.is_empty() {
                bail!("super after a name in a type path");
            }
            resolved.pop().context("super above the crate root")?;
        } else {
            names.push(segment.ident.to_string());
        }
    }
    let name = names.pop().context("empty type path")?;
    resolved.extend(names);
    Ok(full_name(&resolved, &name))
}

fn innermost_path(ty: &Type, map_value: bool) -> anyhow::Result<&syn::Path> {
    let Type::Path(type_path) = ty else {
        bail!("field type is not a path");
    };
    let last = type_path
        .path
        .segments
        .last()
        .context("empty field type path")?;
    let wrapper = last.ident.to_string();
    if let PathArguments::AngleBracketed(arguments) = &last.arguments {
        let types = arguments
            .args
            .iter()
            .filter_map(|argument| match argument {
                GenericArgument::Type(inner) => Some(inner),
                _ => None,
            })
            .collect::<Vec<_>>();
        return match (wrapper.as_str(), types.as_slice()) {
            ("Option" | "Vec" | "Box", [inner]) => innermost_path(inner, map_value),
            ("BTreeMap" | "HashMap", [_, value]) if map_value => innermost_path(value, false),
            _ => bail!("unexpected generic type {wrapper}"),
        };
    }
    Ok(&type_path.path)
}

fn read_resource_impl(
    item: &syn::ItemImpl,
    module: &[String],
    model: &mut ProtobufModel,
) -> anyhow::Result<()> {
    let Some((_, trait_path, _)) = &item.trait_ else {
        return Ok(());
    };
    let is_resource = trait_path.segments.len() == 2
        && trait_path.segments[0].ident == "crate"
        && trait_path.segments[1].ident == "Resource";
    if !is_resource {
        return Ok(());
    }
    let Type::Path(self_type) = item.self_ty.as_ref() else {
        bail!("impl Resource for a non-path type");
    };
    let name = self_type
        .path
        .segments
        .last()
        .context("empty impl type")?
        .ident
        .to_string();
    let constants = string_constants(item);
    let api_version = constants
        .get("API_VERSION")
        .context("Resource impl without API_VERSION")?;
    let kind = constants
        .get("KIND")
        .context("Resource impl without KIND")?;
    model.resources.insert(
        full_name(module, &name),
        (api_version.clone(), kind.clone()),
    );
    Ok(())
}

pub fn string_constants(item: &syn::ItemImpl) -> BTreeMap<String, String> {
    let mut constants = BTreeMap::new();
    for impl_item in &item.items {
        if let syn::ImplItem::Const(constant) = impl_item
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(literal),
                ..
            }) = &constant.expr
        {
            constants.insert(constant.ident.to_string(), literal.value());
        }
    }
    constants
}

//! Appstream data, as `flatpak build-update-repo` gathers it (`extract_appstream`,
//! `flatpak_appstream_xml_migrate`, `validate_component` in flatpak's `common/`): each app's
//! `files/share/app-info/xmls/<id>.xml.gz` and its 64x64 and 128x128 icons, the components with a
//! `<bundle type="flatpak" runtime=… sdk=…>ref</bundle>` inserted (and the `tags` of the metadata
//! as `X-Flatpak-Tags`), serialized the way flatpak serializes them, and the `appstream/<arch>`
//! and `appstream2/<arch>` trees built from that data.
//!
//! Uploads are hostile: the compressed and the inflated XML, the nesting depth and the stored
//! result are bounded, and unknown entities are refused (no DTD is ever expanded). An app whose
//! data is unusable simply has no appstream entry, as with flatpak. Icons are referenced by their
//! content objects, never copied: only root-owned 0644 regular files qualify, so the branch trees
//! name exactly the objects the app shipped.

use std::io::Read;

use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use xmlparser::{ElementEnd, Token, Tokenizer};

use super::dirs::DirTree;
use super::filez::{read_filez_header, FileHeader};
use super::summary::gzip;
use super::tree::Tree;
use super::walk::MAX_METADATA_SIZE;
use super::{Checksum, FormatError, ObjectName, ObjectType};
use crate::store::{read_limited, ObjectStore, StoreError};

/// Where an app keeps its appstream file, `<id>.xml.gz`.
pub const XMLS_DIR: &str = "files/share/app-info/xmls";
/// Where an app keeps its icons, `<size>/<component id>.png`.
pub const ICONS_DIR: &str = "files/share/app-info/icons/flatpak";
/// The icon sizes the branches carry.
pub const ICON_SIZES: [&str; 2] = ["64x64", "128x128"];
/// Largest `.xml.gz` object read.
pub const MAX_COMPRESSED_XML: u64 = 8 * 1024 * 1024;
/// Largest inflated appstream file parsed.
pub const MAX_XML: u64 = 16 * 1024 * 1024;
/// Largest component data kept per ref: it is stored in the ref's record (a DynamoDB item holds
/// at most 400 KB).
pub const MAX_COMPONENTS: usize = 256 * 1024;
/// Largest icon referenced.
pub const MAX_ICON: u64 = 4 * 1024 * 1024;
/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 128;

/// Refs a repository writes for itself on publish, no build carries: the appstream branches and
/// `ostree-metadata`.
pub fn is_generated_ref(name: &str) -> bool {
    name.starts_with("appstream/") || name.starts_with("appstream2/") || name == "ostree-metadata"
}

/// What one ref contributes to its arch's appstream branches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AppstreamData {
    /// The ref's `<component>` elements, bundle inserted, serialized as flatpak does.
    pub components: String,
    pub icons: Vec<Icon>,
}

/// An icon of an app: the content object it ships at `<size>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icon {
    pub size: String,
    pub name: String,
    pub checksum: Checksum,
    /// File size, and the length of its `.filez`.
    pub content_size: u64,
    pub stored_size: u64,
}

/// Why an app's appstream data could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AppstreamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(#[from] FormatError),
}

/// Reads the appstream data of the ref `ref_name` (app id `id`, metadata keyfile `metadata`)
/// from the tree `root`. `Ok(None)` when it ships no appstream file or no component for `id`.
pub async fn extract(
    store: &dyn ObjectStore,
    root: Checksum,
    ref_name: &str,
    id: &str,
    metadata: &str,
) -> Result<Option<AppstreamData>, AppstreamError> {
    let Some(xmls) = lookup_dir(store, root, XMLS_DIR).await? else { return Ok(None) };
    let Some(xml_gz) = xmls.files.iter().find(|(name, _)| *name == format!("{id}.xml.gz")).map(|(_, c)| *c) else {
        return Ok(None);
    };
    let (header, compressed, _) = read_content(store, xml_gz, MAX_COMPRESSED_XML).await?;
    if !header.is_regular() {
        return Err(FormatError::Malformed(format!("{XMLS_DIR}/{id}.xml.gz is not a regular file")).into());
    }
    let xml = gunzip_bounded(&compressed, MAX_XML)?;
    let Some(migrated) = migrate(&xml, ref_name, id, metadata)? else { return Ok(None) };
    let mut icons = Vec::new();
    let icons_dir = lookup_dir(store, root, ICONS_DIR).await?;
    if let (Some(icons_dir), Some(component_id)) = (icons_dir, &migrated.first_id) {
        let name = format!("{}.png", component_id.strip_suffix(".desktop").unwrap_or(component_id));
        for size in ICON_SIZES {
            let Some(dir) = icons_dir.dirs.iter().find(|d| d.name == size) else { continue };
            let dir = read_dirtree(store, dir.tree).await?;
            let Some((_, checksum)) = dir.files.iter().find(|(n, _)| *n == name) else { continue };
            if let Some(icon) = icon(store, size, &name, *checksum).await? {
                icons.push(icon);
            }
        }
    }
    Ok(Some(AppstreamData { components: migrated.components, icons }))
}

/// The icon object if it is a plain root-owned 0644 file of bounded size.
async fn icon(
    store: &dyn ObjectStore,
    size: &str,
    name: &str,
    checksum: Checksum,
) -> Result<Option<Icon>, AppstreamError> {
    let (header, content, stored_size) = read_content(store, checksum, MAX_ICON).await?;
    if header != FileHeader::regular(content.len() as u64, 0o644) {
        return Ok(None);
    }
    Ok(Some(Icon {
        size: size.to_owned(),
        name: name.to_owned(),
        checksum,
        content_size: content.len() as u64,
        stored_size,
    }))
}

/// The dirtree at `path` below `root`, if there is a directory there.
async fn lookup_dir(store: &dyn ObjectStore, root: Checksum, path: &str) -> Result<Option<DirTree>, AppstreamError> {
    let mut tree = read_dirtree(store, root).await?;
    for name in path.split('/') {
        let Some(entry) = tree.dirs.iter().find(|d| d.name == name) else { return Ok(None) };
        tree = read_dirtree(store, entry.tree).await?;
    }
    Ok(Some(tree))
}

async fn read_dirtree(store: &dyn ObjectStore, checksum: Checksum) -> Result<DirTree, AppstreamError> {
    let bytes = read_limited(store, &ObjectName::new(checksum, ObjectType::DirTree).key(), MAX_METADATA_SIZE).await?;
    if Checksum::of(&bytes) != checksum {
        return Err(FormatError::Malformed(format!("dirtree {checksum} does not match its name")).into());
    }
    Ok(DirTree::parse(&bytes)?)
}

/// A content object's header and content (at most `limit` bytes), checked against its name,
/// and the `.filez` length.
pub async fn read_content(
    store: &dyn ObjectStore,
    checksum: Checksum,
    limit: u64,
) -> Result<(FileHeader, Vec<u8>, u64), AppstreamError> {
    let too_large = |size| FormatError::TooLarge { what: "appstream file", size, limit };
    let key = ObjectName::new(checksum, ObjectType::File).key();
    // A `.filez` is its header plus deflated content, which can exceed the content a little.
    let bytes = match read_limited(store, &key, limit + limit / 8 + 64 * 1024).await {
        Ok(bytes) => bytes,
        Err(StoreError::TooLarge { limit, .. }) => return Err(too_large(limit + 1).into()),
        Err(e) => return Err(e.into()),
    };
    let mut cursor = &bytes[..];
    let header = read_filez_header(&mut cursor).map_err(|e| FormatError::Malformed(e.to_string()))?;
    if header.size > limit {
        return Err(too_large(header.size).into());
    }
    let mut content = Vec::new();
    if header.is_regular() {
        flate2::read::DeflateDecoder::new(cursor)
            .take(limit + 1)
            .read_to_end(&mut content)
            .map_err(|e| FormatError::Malformed(format!("corrupt compressed content: {e}")))?;
    }
    let mut canonical = header.checksum_prefix();
    canonical.extend_from_slice(&content);
    if content.len() as u64 != header.size || Checksum::of(&canonical) != checksum {
        return Err(FormatError::Malformed(format!("content object {checksum} does not match its name")).into());
    }
    Ok((header, content, bytes.len() as u64))
}

/// Inflates gzip data, refusing more than `limit` bytes.
fn gunzip_bounded(data: &[u8], limit: u64) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    GzDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::Malformed(format!("appstream file is not valid gzip: {e}")))?;
    if out.len() as u64 > limit {
        return Err(FormatError::TooLarge { what: "inflated appstream file", size: out.len() as u64, limit });
    }
    Ok(out)
}

/// The migrated components of one appstream file.
#[derive(Debug, PartialEq, Eq)]
pub struct Migrated {
    pub components: String,
    /// The id of the first component taken, which names the icons.
    pub first_id: Option<String>,
}

/// flatpak's `flatpak_appstream_xml_migrate`: the `<component>`s of the `<components>` root whose
/// `<id>` (minus a `.desktop` suffix) starts with `id`, each with its `<bundle>` replaced by
/// flatpak's and the metadata's tags added. `None` when no component qualifies.
pub fn migrate(xml: &[u8], ref_name: &str, id: &str, metadata: &str) -> Result<Option<Migrated>, FormatError> {
    let text = std::str::from_utf8(xml).map_err(|_| FormatError::Malformed("appstream file is not UTF-8".into()))?;
    let root = parse(text)?;
    if root.name != "components" {
        return Ok(None);
    }
    let group = if ref_name.starts_with("app/") { "Application" } else { "Runtime" };
    let keys = KeyFileGroup::parse(metadata, group);
    let tags: Vec<&str> = keys.get("tags").map_or(Vec::new(), |t| t.split(';').filter(|t| !t.is_empty()).collect());
    let bundle = bundle(ref_name, keys.get("runtime"), keys.get("sdk"));
    let mut components = String::new();
    let mut first_id = None;
    for node in root.children {
        let Node::Element(mut component) = node else { continue };
        let Some(component_id) = component_id(&component, id) else { continue };
        first_id.get_or_insert(component_id);
        component.children.retain(|c| !matches!(c, Node::Element(e) if e.name == "bundle"));
        component.children.push(Node::Text("  ".into()));
        component.children.push(Node::Element(bundle.clone()));
        component.children.push(Node::Text("\n  ".into()));
        if !tags.is_empty() {
            add_tags(&mut component, &tags.join(","));
        }
        component.write(&mut components);
    }
    if components.len() > MAX_COMPONENTS {
        return Err(FormatError::TooLarge {
            what: "appstream components",
            size: components.len() as u64,
            limit: MAX_COMPONENTS as u64,
        });
    }
    Ok(first_id.map(|first_id| Migrated { components, first_id: Some(first_id) }))
}

/// `validate_component`'s test: a `<component>` whose first `<id>`'s first text, trimmed and
/// without `.desktop` (unless `id` has it), starts with `id`. Returns that id text as written.
fn component_id(component: &Element, id: &str) -> Option<String> {
    if component.name != "component" {
        return None;
    }
    let id_node = component.children.iter().find_map(|c| match c {
        Node::Element(e) if e.name == "id" => Some(e),
        _ => None,
    })?;
    let text = id_node.children.iter().find_map(|c| match c {
        Node::Text(t) => Some(t.trim()),
        Node::Element(_) => None,
    })?;
    let bare = match text.strip_suffix(".desktop") {
        Some(bare) if !id.ends_with(".desktop") => bare,
        _ => text,
    };
    bare.starts_with(id).then(|| text.to_owned())
}

fn bundle(ref_name: &str, runtime: Option<&str>, sdk: Option<&str>) -> Element {
    let mut attributes = vec![("type".to_owned(), "flatpak".to_owned())];
    if let Some(runtime) = runtime.filter(|r| !r.starts_with("runtime/")) {
        attributes.push(("runtime".into(), runtime.to_owned()));
    }
    if let Some(sdk) = sdk {
        attributes.push(("sdk".into(), sdk.to_owned()));
    }
    Element { name: "bundle".into(), attributes, children: vec![Node::Text(ref_name.to_owned())] }
}

/// Adds `<value key="X-Flatpak-Tags">` to the component's `<metadata>`, creating it if needed.
fn add_tags(component: &mut Element, tags: &str) {
    let position = component.children.iter().position(|c| matches!(c, Node::Element(e) if e.name == "metadata"));
    let index = match position {
        Some(index) => index,
        None => {
            component.children.push(Node::Text("  ".into()));
            component.children.push(Node::Element(Element::new("metadata")));
            component.children.push(Node::Text("\n  ".into()));
            component.children.len() - 2
        }
    };
    let Node::Element(metadata) = &mut component.children[index] else { unreachable!("found as an element") };
    let value = Element {
        name: "value".into(),
        attributes: vec![("key".into(), "X-Flatpak-Tags".into())],
        children: vec![Node::Text(tags.to_owned())],
    };
    metadata.children.push(Node::Text("\n       ".into()));
    metadata.children.push(Node::Element(value));
    metadata.children.push(Node::Text("\n    ".into()));
}

/// The appstream document of a branch: flatpak's header and root, then the components.
pub fn document<'a>(components: impl IntoIterator<Item = &'a str>) -> String {
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<components version=\"0.8\" origin=\"flatpak\">\n  ");
    for component in components {
        xml.push_str(component);
    }
    xml.push_str("\n</components>");
    xml
}

/// The trees of `appstream/<arch>` (`appstream.xml.gz`) and `appstream2/<arch>`
/// (`appstream.xml`) for these refs' data, in the order given.
pub fn branch_trees<'a>(
    data: impl IntoIterator<Item = &'a AppstreamData> + Clone,
) -> Result<(Tree, Tree), FormatError> {
    let xml = document(data.clone().into_iter().map(|d| d.components.as_str()));
    let mut old = Tree::new();
    let mut new = Tree::new();
    old.add_file("appstream.xml.gz", &gzip(xml.as_bytes(), 6))?;
    new.add_file("appstream.xml", xml.as_bytes())?;
    for tree in [&mut old, &mut new] {
        for size in ICON_SIZES {
            tree.add_dir(&format!("icons/{size}"))?;
            tree.add_symlink(&format!("icons/flatpak/{size}"), &format!("../{size}"))?;
        }
        for data in data.clone() {
            for icon in &data.icons {
                let path = format!("icons/{}/{}", icon.size, icon.name);
                tree.add_object(&path, icon.checksum, icon.content_size, icon.stored_size)?;
            }
        }
    }
    Ok((old, new))
}

/// One group of a keyfile, as much of GKeyFile as flatpak's metadata needs here.
struct KeyFileGroup<'a> {
    entries: Vec<(&'a str, &'a str)>,
}

impl<'a> KeyFileGroup<'a> {
    fn parse(text: &'a str, group: &str) -> Self {
        let mut current = None;
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = Some(name);
            } else if current == Some(group) {
                if let Some((key, value)) = line.split_once('=') {
                    entries.push((key.trim_end(), value.trim_start()));
                }
            }
        }
        Self { entries }
    }

    /// The last value of `key`, as GKeyFile keeps it.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.entries.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Element {
    fn new(name: &str) -> Self {
        Self { name: name.to_owned(), attributes: Vec::new(), children: Vec::new() }
    }

    /// flatpak's `flatpak_xml_to_string`: `<name a="v">children</name>`, or `<name a="v"/>` when
    /// empty. Attribute values are escaped (flatpak writes them raw, which breaks on `&` or `"`).
    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (name, value) in &self.attributes {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape_into(value, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write(out),
                Node::Text(t) => escape_into(t, out),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// `g_markup_escape_text`.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&quot;"),
            '\u{1}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' => {
                out.push_str(&format!("&#x{:x};", c as u32))
            }
            c => out.push(c),
        }
    }
}

/// Parses a document into its root element, keeping text (CDATA as text) and dropping comments,
/// processing instructions and the doctype, as GMarkup does for flatpak.
fn parse(text: &str) -> Result<Element, FormatError> {
    let malformed = |what: String| FormatError::Malformed(format!("appstream XML: {what}"));
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    for token in Tokenizer::from(text) {
        let token = token.map_err(|e| malformed(e.to_string()))?;
        match token {
            Token::ElementStart { prefix, local, .. } => {
                if root.is_some() {
                    return Err(malformed("content after the root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(format!("elements nested deeper than {MAX_DEPTH}")));
                }
                stack.push(Element::new(&qualified(prefix.as_str(), local.as_str())));
            }
            Token::Attribute { prefix, local, value, .. } => {
                let element = stack.last_mut().ok_or_else(|| malformed("attribute outside an element".into()))?;
                element.attributes.push((qualified(prefix.as_str(), local.as_str()), unescape(value.as_str())?));
            }
            Token::ElementEnd { end, .. } => {
                let close = match end {
                    ElementEnd::Open => continue,
                    ElementEnd::Empty => None,
                    ElementEnd::Close(prefix, local) => Some(qualified(prefix.as_str(), local.as_str())),
                };
                let element = stack.pop().ok_or_else(|| malformed("unbalanced end tag".into()))?;
                if close.is_some_and(|name| name != element.name) {
                    return Err(malformed(format!("<{}> closed by another end tag", element.name)));
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(element)),
                    None => root = Some(element),
                }
            }
            Token::Text { text } => {
                let text = unescape(text.as_str())?;
                match stack.last_mut() {
                    Some(parent) => push_text(parent, text),
                    None if text.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element".into())),
                }
            }
            Token::Cdata { text, .. } => match stack.last_mut() {
                Some(parent) => push_text(parent, text.as_str().to_owned()),
                None => return Err(malformed("CDATA outside the root element".into())),
            },
            Token::EntityDeclaration { .. } => return Err(malformed("entity declarations are not accepted".into())),
            Token::Declaration { .. }
            | Token::ProcessingInstruction { .. }
            | Token::Comment { .. }
            | Token::DtdStart { .. }
            | Token::EmptyDtd { .. }
            | Token::DtdEnd { .. } => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed elements".into()));
    }
    root.ok_or_else(|| malformed("no root element".into()))
}

/// Adjacent text (around a dropped comment, or CDATA) is one text node, as GMarkup reports it.
fn push_text(parent: &mut Element, text: String) {
    match parent.children.last_mut() {
        Some(Node::Text(previous)) => previous.push_str(&text),
        _ => parent.children.push(Node::Text(text)),
    }
}

fn qualified(prefix: &str, local: &str) -> String {
    if prefix.is_empty() {
        local.to_owned()
    } else {
        format!("{prefix}:{local}")
    }
}

/// Replaces the predefined entities and character references.
fn unescape(text: &str) -> Result<String, FormatError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find(';')
            .ok_or_else(|| FormatError::Malformed("appstream XML: unterminated entity".into()))?;
        let entity = &rest[start + 1..start + end];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .filter(|c| *c != '\0')
                    .ok_or_else(|| FormatError::Malformed(format!("appstream XML: unknown entity &{entity};")))?
            }
        };
        out.push(c);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "app/org.example.App/x86_64/stable";
    const METADATA: &str = "[Application]\nname=org.example.App\nruntime=org.example.Platform/x86_64/stable\nsdk=org.example.Sdk/x86_64/stable\n";

    fn migrated(xml: &str, metadata: &str) -> Option<Migrated> {
        migrate(xml.as_bytes(), APP, "org.example.App", metadata).unwrap()
    }

    #[test]
    fn inserts_flatpaks_bundle_and_replaces_any_shipped_one() {
        let xml = "<?xml version=\"1.0\"?>\n<!-- c -->\n<components version=\"0.8\">\n  <component type=\"desktop\">\n    <id>org.example.App.desktop</id>\n    <name>A &amp; B</name>\n    <bundle type=\"flatpak\">app/evil/x86_64/stable</bundle>\n  </component>\n  <component><id>org.other.App</id></component>\n</components>\n";
        let m = migrated(xml, METADATA).unwrap();
        assert_eq!(m.first_id.as_deref(), Some("org.example.App.desktop"));
        let expected = concat!(
            "<component type=\"desktop\">\n    <id>org.example.App.desktop</id>\n    <name>A &amp; B</name>\n    \n  ",
            "  <bundle type=\"flatpak\" runtime=\"org.example.Platform/x86_64/stable\" ",
            "sdk=\"org.example.Sdk/x86_64/stable\">app/org.example.App/x86_64/stable</bundle>\n  </component>"
        );
        assert_eq!(m.components, expected);
        let doc = document([m.components.as_str()]);
        assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<components version=\"0.8\" origin=\"flatpak\">\n  <component "));
        assert!(doc.ends_with("</component>\n</components>"));
        assert!(parse(&doc).is_ok());
    }

    #[test]
    fn adds_tags_and_skips_other_apps() {
        let tags = format!("{METADATA}tags=beta;proprietary;\n");
        let m = migrated("<components><component><id>org.example.App</id><metadata/></component></components>", &tags)
            .unwrap();
        assert!(m
            .components
            .contains("<metadata>\n       <value key=\"X-Flatpak-Tags\">beta,proprietary</value>\n    </metadata>"));
        assert_eq!(migrated("<components><component><id>org.other.App</id></component></components>", METADATA), None);
        assert_eq!(migrated("<component><id>org.example.App</id></component>", METADATA), None);
    }

    #[test]
    fn refuses_hostile_or_broken_xml() {
        let deep = format!("<components>{}{}</components>", "<a>".repeat(200), "</a>".repeat(200));
        let bomb = "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><components>&a;</components>";
        for bad in ["<components><component></components>", "<components>&nope;</components>", &deep, bomb, "x<a/>"] {
            assert!(migrate(bad.as_bytes(), APP, "org.example.App", METADATA).is_err(), "{bad}");
        }
        let huge = format!(
            "<components><component><id>org.example.App</id><d>{}</d></component></components>",
            "x".repeat(MAX_COMPONENTS)
        );
        assert!(matches!(
            migrate(huge.as_bytes(), APP, "org.example.App", METADATA),
            Err(FormatError::TooLarge { .. })
        ));
        let gz = gzip(&vec![b' '; 1 << 20], 9);
        assert!(gunzip_bounded(&gz, 1000).is_err());
    }
}

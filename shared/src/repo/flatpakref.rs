//! `.flatpakref` and `.flatpakrepo` files: the one-click descriptions of an app and of a
//! repository that `flatpak install --from` and `flatpak remote-add --from` read.
//!
//! Keys and their order follow flat-manager: `Name`, `Branch`, `Title`, `IsRuntime`, `Url`, then
//! `DeployCollectionID`, `SuggestRemoteName`, `GPGKey`, `RuntimeRepo` when known. A collection id
//! is written only together with `GPGKey`: flatpak refuses a file that has one without the other.

use super::refs::{FlatpakRef, RefKind};

/// Runtime suffixes of extension refs that are installed with their app, never on their own.
const EXTENSION_SUFFIXES: &[&str] = &[".Debug", ".Locale", ".Sources", ".Docs"];

/// What a client needs to know of the remote a file points at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// The repository URL clients pull from.
    pub url: String,
    /// The remote's title (`.flatpakrepo`) and the name in app titles (`<id> from <name>`).
    pub title: String,
    /// `SuggestRemoteName=`: the remote name clients should add (main repositories only).
    pub suggested_name: Option<String>,
    /// `DeployCollectionID=`: the collection id clients should bind the remote to.
    pub deploy_collection_id: Option<String>,
    /// `GPGKey=`: base64 of the binary public keyring that signs the repository.
    pub gpg_key: Option<String>,
    /// `RuntimeRepo=`: the URL of a `.flatpakrepo` that provides the runtimes.
    pub runtime_repo: Option<String>,
}

/// Whether `flatpak_ref` gets a `.flatpakref` in a build repository: apps, and runtimes that are
/// not an app's debug, locale, sources or docs extension.
pub fn wants_build_ref_file(flatpak_ref: &FlatpakRef) -> bool {
    match flatpak_ref.kind {
        RefKind::App => true,
        RefKind::Runtime => !EXTENSION_SUFFIXES.iter().any(|suffix| flatpak_ref.id.ends_with(suffix)),
    }
}

/// The key of a build repository's `.flatpakref` for `flatpak_ref`: `<id>.flatpakref`.
pub fn build_ref_file_key(flatpak_ref: &FlatpakRef) -> String {
    format!("{}.flatpakref", flatpak_ref.id)
}

/// The key of a published app's `.flatpakref`: `appstream/<id>.flatpakref`.
pub fn repo_ref_file_key(flatpak_ref: &FlatpakRef) -> String {
    format!("appstream/{}.flatpakref", flatpak_ref.id)
}

/// The key of a repository's `.flatpakrepo` at its root: the last segment of its name (a name
/// may contain `/`) with `.flatpakrepo`.
pub fn repo_file_key(repo_name: &str) -> String {
    format!("{}.flatpakrepo", repo_name.rsplit('/').next().unwrap_or(repo_name))
}

/// A build repository's `.flatpakref` for `flatpak_ref`: titled `<id> build nr <build>`, with no
/// suggested remote name and no collection id, so a test install never joins the main remote.
pub fn build_ref_file(flatpak_ref: &FlatpakRef, build: i64, remote: &Remote) -> String {
    let build_remote = Remote { suggested_name: None, deploy_collection_id: None, ..remote.clone() };
    ref_file(flatpak_ref, &format!("{} build nr {build}", flatpak_ref.id), &build_remote)
}

/// A main repository's `.flatpakref` for `flatpak_ref`: titled `<id> from <remote title>`.
pub fn repo_ref_file(flatpak_ref: &FlatpakRef, remote: &Remote) -> String {
    ref_file(flatpak_ref, &format!("{} from {}", flatpak_ref.id, remote.title), remote)
}

fn ref_file(flatpak_ref: &FlatpakRef, title: &str, remote: &Remote) -> String {
    let is_runtime = flatpak_ref.kind == RefKind::Runtime;
    let mut text = format!(
        "[Flatpak Ref]\nName={}\nBranch={}\nTitle={title}\nIsRuntime={is_runtime}\nUrl={}\n",
        flatpak_ref.id, flatpak_ref.branch, remote.url
    );
    if let (Some(collection_id), Some(_)) = (&remote.deploy_collection_id, &remote.gpg_key) {
        text.push_str(&format!("DeployCollectionID={collection_id}\n"));
    }
    push_optional(&mut text, "SuggestRemoteName", &remote.suggested_name);
    push_optional(&mut text, "GPGKey", &remote.gpg_key);
    push_optional(&mut text, "RuntimeRepo", &remote.runtime_repo);
    text
}

/// A repository's `.flatpakrepo`.
pub fn repo_file(remote: &Remote) -> String {
    let mut text = format!("[Flatpak Repo]\nTitle={}\nUrl={}\n", remote.title, remote.url);
    push_optional(&mut text, "GPGKey", &remote.gpg_key);
    if let (Some(collection_id), Some(_)) = (&remote.deploy_collection_id, &remote.gpg_key) {
        text.push_str(&format!("DeployCollectionID={collection_id}\n"));
    }
    text
}

fn push_optional(text: &mut String, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        text.push_str(&format!("{key}={value}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Remote {
        Remote {
            url: "https://repo.example.org/repo/stable".into(),
            title: "example".into(),
            suggested_name: Some("example".into()),
            deploy_collection_id: Some("org.example.Stable".into()),
            gpg_key: Some("mQINBF".into()),
            runtime_repo: Some("https://example.org/runtimes.flatpakrepo".into()),
        }
    }

    fn parse(name: &str) -> FlatpakRef {
        name.parse().unwrap()
    }

    #[test]
    fn main_repo_ref_files_list_flat_managers_keys_in_its_order() {
        let text = repo_ref_file(&parse("app/org.example.App/x86_64/stable"), &remote());
        assert_eq!(
            text,
            "[Flatpak Ref]\nName=org.example.App\nBranch=stable\nTitle=org.example.App from example\n\
             IsRuntime=false\nUrl=https://repo.example.org/repo/stable\nDeployCollectionID=org.example.Stable\n\
             SuggestRemoteName=example\nGPGKey=mQINBF\nRuntimeRepo=https://example.org/runtimes.flatpakrepo\n"
        );
    }

    #[test]
    fn build_ref_files_name_the_build_and_never_deploy_a_collection() {
        let text = build_ref_file(&parse("runtime/org.example.Platform/x86_64/stable"), 7, &remote());
        assert!(text.contains("\nTitle=org.example.Platform build nr 7\nIsRuntime=true\n"), "{text}");
        assert!(!text.contains("DeployCollectionID") && !text.contains("SuggestRemoteName"), "{text}");
        assert!(text.contains("\nGPGKey=mQINBF\n"), "{text}");
    }

    #[test]
    fn a_collection_id_needs_a_key() {
        let unsigned = Remote { gpg_key: None, ..remote() };
        let flatpakref = repo_ref_file(&parse("app/org.example.App/x86_64/stable"), &unsigned);
        let flatpakrepo = repo_file(&unsigned);
        assert!(!flatpakref.contains("CollectionID") && !flatpakrepo.contains("CollectionID"));
        assert!(!flatpakref.contains("GPGKey") && !flatpakrepo.contains("GPGKey"));
    }

    #[test]
    fn repo_files_carry_url_title_key_and_collection() {
        assert_eq!(
            repo_file(&remote()),
            "[Flatpak Repo]\nTitle=example\nUrl=https://repo.example.org/repo/stable\nGPGKey=mQINBF\n\
             DeployCollectionID=org.example.Stable\n"
        );
    }

    #[test]
    fn extensions_get_no_build_ref_file() {
        assert!(wants_build_ref_file(&parse("app/org.example.App/x86_64/stable")));
        assert!(wants_build_ref_file(&parse("runtime/org.example.Platform/x86_64/stable")));
        for suffix in EXTENSION_SUFFIXES {
            assert!(!wants_build_ref_file(&parse(&format!("runtime/org.example.App{suffix}/x86_64/stable"))));
        }
    }

    #[test]
    fn keys_sit_where_flat_manager_puts_them() {
        let app = parse("app/org.example.App/x86_64/stable");
        assert_eq!(build_ref_file_key(&app), "org.example.App.flatpakref");
        assert_eq!(repo_ref_file_key(&app), "appstream/org.example.App.flatpakref");
        assert_eq!(repo_file_key("stable"), "stable.flatpakrepo");
        assert_eq!(repo_file_key("beta/testing"), "testing.flatpakrepo");
    }
}

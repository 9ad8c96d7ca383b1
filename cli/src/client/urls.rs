//! The URLs the client is given and the API URLs derived from them. A manager URL is the server
//! root (`http://host:8080`, possibly with a base path); a build URL is the `Location` that
//! `create` returned (`http://host:8080/api/v1/build/7`).

use std::fmt;

use super::error::ClientError;

/// A server root: API paths are appended to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerUrl(String);

impl ManagerUrl {
    pub fn new(url: &str) -> Self {
        Self(url.trim_end_matches('/').to_owned())
    }

    /// `<root>/api/v1/<path>`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.0)
    }

    /// The URL of a job by id, readable with the `jobs` scope.
    pub fn job(&self, id: i64) -> String {
        self.api(&format!("job/{id}"))
    }
}

/// A build's API URL, `<root>/api/v1/build/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUrl {
    url: String,
    id: i64,
    /// Everything before `/api/v1/build/<id>`.
    root: String,
}

impl BuildUrl {
    /// Parses a build URL, tolerating a trailing `/`.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let url = url.trim_end_matches('/');
        let invalid = || ClientError::Usage(format!("Not a build URL (…/api/v1/build/<id>): {url}"));
        let (rest, id) = url.rsplit_once('/').ok_or_else(invalid)?;
        let id: i64 = id.parse().map_err(|_| invalid())?;
        let root = rest.strip_suffix("/api/v1/build").ok_or_else(invalid)?;
        if !root.contains("://") {
            return Err(invalid());
        }
        Ok(Self { url: url.to_owned(), id, root: root.to_owned() })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// The build URL itself.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// `<build url>/<path>`.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{path}", self.url)
    }

    /// The server root the build lives on.
    pub fn manager(&self) -> ManagerUrl {
        ManagerUrl(self.root.clone())
    }

    /// The subject a token needs for this build: `build/<id>`.
    pub fn subject(&self) -> String {
        format!("build/{}", self.id)
    }
}

impl fmt::Display for BuildUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Makes a `Location` header absolute against the URL of the request that returned it.
pub fn absolute_location(request_url: &str, location: &str) -> String {
    match reqwest::Url::parse(request_url).and_then(|base| base.join(location)) {
        Ok(url) => url.to_string(),
        Err(_) => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_url_gives_id_manager_and_job_urls() {
        let build = BuildUrl::parse("http://127.0.0.1:8080/api/v1/build/42/").unwrap();
        assert_eq!(build.id(), 42);
        assert_eq!(build.as_str(), "http://127.0.0.1:8080/api/v1/build/42");
        assert_eq!(build.join("missing_objects"), "http://127.0.0.1:8080/api/v1/build/42/missing_objects");
        assert_eq!(build.manager().api("token_subset"), "http://127.0.0.1:8080/api/v1/token_subset");
        assert_eq!(build.manager().job(9), "http://127.0.0.1:8080/api/v1/job/9");
        assert_eq!(build.subject(), "build/42");
    }

    #[test]
    fn build_url_keeps_a_base_path() {
        let build = BuildUrl::parse("https://example.org/fm/api/v1/build/3").unwrap();
        assert_eq!(build.manager(), ManagerUrl::new("https://example.org/fm/"));
        assert_eq!(build.manager().api("build"), "https://example.org/fm/api/v1/build");
    }

    #[test]
    fn rejects_urls_that_are_not_build_urls() {
        for bad in ["http://h/api/v1/build/x", "http://h/api/v1/job/3", "/api/v1/build/3", "3", ""] {
            assert!(BuildUrl::parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn relative_locations_are_made_absolute() {
        let url = absolute_location("http://h:1/api/v1/build", "/api/v1/build/5");
        assert_eq!(url, "http://h:1/api/v1/build/5");
        assert_eq!(absolute_location("http://h:1/x", "http://o/y"), "http://o/y");
    }
}

//! What the SAM template says about invoking the functions: the HTTP API's routes (each
//! function's `HttpApi` events) and the SQS event sources (its `SQS` events), each naming the
//! cargo binary that `BuildMethod: rust-cargolambda` builds from `Metadata.BuildProperties.Binary`.
//!
//! Only these keys are read; CloudFormation's short tags (`!Ref`, `!Sub`, `!GetAtt`…) elsewhere in
//! the template parse as plain values.

use std::path::Path;

use anyhow::{bail, ensure, Context};
use yaml_rust2::{Yaml, YamlLoader};

/// The SAM function type whose events are read.
const FUNCTION_TYPE: &str = "AWS::Serverless::Function";
/// The SAM build method for Rust functions built with cargo-lambda.
const CARGO_LAMBDA_BUILD: &str = "rust-cargolambda";

/// The invocation side of a SAM template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Every `HttpApi` event of every function.
    pub routes: Vec<Route>,
    /// Every `SQS` event of every function.
    pub queue_consumers: Vec<QueueConsumer>,
}

/// One HTTP API route: `Method Path` → a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method, or `ANY`.
    pub method: String,
    /// The path as the template writes it, e.g. `/api/v1/build/{id}/upload`.
    pub path: String,
    /// The cargo binary of the function the route invokes.
    pub binary: String,
    segments: Vec<Segment>,
}

/// A segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches itself.
    Literal(String),
    /// `{name}`: matches one non-empty segment.
    Parameter,
    /// `{name+}`, last: matches one or more segments.
    Greedy,
}

/// A function fed by an SQS queue through an event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConsumer {
    /// The cargo binary of the function.
    pub binary: String,
    /// Most messages per invocation (SQS's default is 10).
    pub batch_size: usize,
    /// Whether the function reports failed items (`ReportBatchItemFailures`) rather than
    /// failing the whole batch.
    pub reports_item_failures: bool,
}

impl Template {
    /// Reads the template at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses a template's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let docs = YamlLoader::load_from_str(text).context("the template is not YAML")?;
        let resources = docs.first().map(|doc| &doc["Resources"]).and_then(Yaml::as_hash);
        let resources = resources.context("the template has no Resources")?;
        let mut template = Self { routes: Vec::new(), queue_consumers: Vec::new() };
        for (name, resource) in resources {
            // Container-image functions (the libostree `deltas` function) cannot run under the
            // emulator; their update-repo jobs are run by the static-delta tests on moto instead.
            let image = resource["Properties"]["PackageType"].as_str() == Some("Image");
            if resource["Type"].as_str() == Some(FUNCTION_TYPE) && !image {
                let name = name.as_str().context("a resource name is not a string")?;
                template.add_function(resource).with_context(|| format!("function {name}"))?;
            }
        }
        Ok(template)
    }

    /// The binaries of every function the template routes requests or queue messages to.
    pub fn binaries(&self) -> Vec<String> {
        let mut binaries: Vec<String> = self.routes.iter().map(|r| r.binary.clone()).collect();
        binaries.extend(self.queue_consumers.iter().map(|c| c.binary.clone()));
        binaries.sort();
        binaries.dedup();
        binaries
    }

    /// The route API Gateway would pick for `method` and `path`: of those that match, the one with
    /// the most literal segments, a greedy one last, as for HTTP APIs.
    pub fn route(&self, method: &str, path: &str) -> Option<&Route> {
        self.routes.iter().filter(|r| r.matches(method, path)).max_by_key(|r| r.specificity())
    }

    fn add_function(&mut self, resource: &Yaml) -> anyhow::Result<()> {
        let Some(events) = resource["Properties"]["Events"].as_hash() else {
            return Ok(());
        };
        for (name, event) in events {
            let name = name.as_str().unwrap_or_default();
            let properties = &event["Properties"];
            match event["Type"].as_str() {
                Some("HttpApi") => {
                    let binary = binary(resource).with_context(|| format!("event {name}"))?;
                    self.routes.push(Route::new(string(properties, "Method")?, string(properties, "Path")?, binary)?);
                }
                Some("SQS") => {
                    let binary = binary(resource).with_context(|| format!("event {name}"))?;
                    self.queue_consumers.push(QueueConsumer::new(properties, binary)?);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The cargo binary a function's `rust-cargolambda` build makes.
fn binary(resource: &Yaml) -> anyhow::Result<String> {
    let metadata = &resource["Metadata"];
    ensure!(
        metadata["BuildMethod"].as_str() == Some(CARGO_LAMBDA_BUILD),
        "only `BuildMethod: {CARGO_LAMBDA_BUILD}` functions run locally"
    );
    string(&metadata["BuildProperties"], "Binary").context("a cargo-lambda build names its binary")
}

/// The string at `key` of a mapping.
fn string(node: &Yaml, key: &str) -> anyhow::Result<String> {
    node[key].as_str().map(str::to_owned).with_context(|| format!("no string `{key}`"))
}

impl Route {
    fn new(method: String, path: String, binary: String) -> anyhow::Result<Self> {
        let segments = path_segments(&path).map(segment).collect::<Vec<_>>();
        if let Some(position) = segments.iter().position(|s| *s == Segment::Greedy) {
            ensure!(position + 1 == segments.len(), "route {path}: a greedy parameter must end the path");
        }
        Ok(Self { method: method.to_ascii_uppercase(), path, binary, segments })
    }

    /// `METHOD /path`, as a route key reads in API Gateway.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        if self.method != "ANY" && !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let mut parts = path_segments(path);
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Greedy, Some(part)) => return !part.is_empty(),
                (Segment::Parameter, Some(part)) if !part.is_empty() => {}
                (Segment::Literal(literal), Some(part)) if literal == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }

    fn specificity(&self) -> (usize, bool) {
        let literals = self.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        (literals, !self.segments.contains(&Segment::Greedy))
    }
}

/// The segments of a path after its leading `/`.
fn path_segments(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

fn segment(text: &str) -> Segment {
    match text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        Some(name) if name.ends_with('+') => Segment::Greedy,
        Some(_) => Segment::Parameter,
        None => Segment::Literal(text.to_owned()),
    }
}

impl QueueConsumer {
    fn new(properties: &Yaml, binary: String) -> anyhow::Result<Self> {
        let batch_size = match &properties["BatchSize"] {
            Yaml::BadValue => 10,
            Yaml::Integer(n) if *n > 0 => *n as usize,
            other => bail!("BatchSize {other:?} is not a positive integer"),
        };
        let types = properties["FunctionResponseTypes"].as_vec().map(Vec::as_slice).unwrap_or_default();
        let reports_item_failures = types.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures"));
        Ok(Self { binary, batch_size, reports_item_failures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Template {
        Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap()
    }

    #[test]
    fn reads_the_shipped_templates_routes_and_queue_consumer() {
        let template = shipped();
        let route = template.route("POST", "/api/v1/build/12/upload").unwrap();
        assert_eq!((route.binary.as_str(), route.key().as_str()), ("upload", "POST /api/v1/build/{id}/upload"));
        assert_eq!(template.route("get", "/api/v1/build").unwrap().binary, "create");
        assert_eq!(template.route("POST", "/api/v1/build/12/publish").unwrap().binary, "publish");
        let consumer = QueueConsumer { binary: "worker".into(), batch_size: 1, reports_item_failures: true };
        assert_eq!(template.queue_consumers, [consumer]);
        for binary in ["commit", "create", "publish", "upload", "worker"] {
            assert!(template.binaries().iter().any(|b| b == binary), "{binary} in {:?}", template.binaries());
        }
    }

    #[test]
    fn leaves_unrouted_paths_and_methods_unmatched() {
        let template = shipped();
        assert!(template.route("DELETE", "/api/v1/build/12").is_none());
        assert!(template.route("GET", "/api/v1/build/12/nothing").is_none());
        assert!(template.route("GET", "/api/v1/build//extended").is_none());
        assert!(template.route("GET", "/build-repo/12").is_none());
    }

    #[test]
    fn greedy_parameters_take_the_rest_of_the_path() {
        let route = shipped().route("GET", "/build-repo/12/objects/ab/cdef.filez").unwrap().clone();
        assert_eq!((route.binary.as_str(), route.path.as_str()), ("upload", "/build-repo/{id}/{path+}"));
    }

    #[test]
    fn prefers_literal_segments_over_parameters() {
        let template = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildMethod: rust-cargolambda\n      \
             BuildProperties: {Binary: f}\n    Properties:\n      Events:\n        \
             A: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: '/x/{id}'}}\n        \
             B: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: ANY, Path: '/x/latest'}}\n",
        )
        .unwrap();
        assert_eq!(template.route("GET", "/x/latest").unwrap().path, "/x/latest");
        assert_eq!(template.route("GET", "/x/7").unwrap().path, "/x/{id}");
    }

    #[test]
    fn rejects_a_routed_function_without_a_cargo_lambda_binary() {
        let error = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        \
             A: {Type: HttpApi, Properties: {Method: GET, Path: /x}}\n",
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("rust-cargolambda"), "{error:#}");
    }
}

//! The `create` function: its routes of the flat-manager API (see the SAM template), served by the
//! shared Router.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    flatbucket_functions::serve_api().await
}

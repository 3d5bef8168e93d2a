//! Prints the OpenAPI document of the REST edge (`make openapi` writes it to
//! `proto/messaging.openapi.json`, which a test keeps in step with the protos).

fn main() -> anyhow::Result<()> {
    let pool = messaging_proto::json::pool()?;
    println!("{}", rest_edge::openapi::render(pool)?);
    Ok(())
}

//! `PUT` and `GET /v2/images/{id}/file`: image data, streamed to and from the blob store
//! without holding it in memory. An upload claims the image (`queued` → `saving`, with
//! compare-and-swap, so two uploads cannot both win), is written by a blocking task that
//! hashes it as it goes, and makes the image `active` with its size, hashes and digest; if
//! the data is not what the image expects, or the client goes away, nothing is stored and
//! the image is `queued` again. The upload runs in a task of its own so that this holds
//! even when the client's connection (and with it the request's future) is dropped.

use std::io;

use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use ronghe_apiserver::engine::Target as EngineTarget;
use ronghe_images::blob::{BlobError, BlobInfo, BlobStore, Digest, Expected, HashAlgorithm};
use ronghe_images::model::{STATUS_ACTIVE, STATUS_QUEUED, STATUS_SAVING};
use ronghe_images::stream::chunk_channel;
use tokio::io::AsyncReadExt;

use super::view::{Image, OWNER_SPECIFIED_HASHES};
use super::{BLOB_GATE, Caller, bad_request, conflict, forbidden, glance, internal, now};
use crate::fault::{Fault, FaultResult};

/// How many chunks of an upload may wait for the writer.
const UPLOAD_QUEUE: usize = 16;
/// The size of the chunks a download is sent in.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

pub(super) async fn upload(
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Fault> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/octet-stream") {
        return Err(glance(Fault::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type {content_type:?}: image data is application/octet-stream."
            ),
        )));
    }
    let size = match headers.get("x-openstack-image-size") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| bad_request("X-OpenStack-Image-Size must be a number of bytes."))?,
        ),
    };
    let blobs = caller.blobs()?.clone();
    let image = caller
        .update(&id, EngineTarget::Status, |caller, image| {
            caller.allow("upload_image", Some(&image.namespace))?;
            if image.spec.disk_format.is_none() || image.spec.container_format.is_none() {
                return Err(bad_request(
                    "Properties disk_format, container_format must be set prior to saving data.",
                ));
            }
            if image.status.status != STATUS_QUEUED {
                return Err(conflict(format!(
                    "Image status transition from {} to {STATUS_SAVING} is not allowed",
                    image.status.status
                )));
            }
            image.status.status = STATUS_SAVING.to_owned();
            image.status.updated_at = Some(now());
            Ok(true)
        })
        .await?;
    let expected = expected_of(&image, size)?;
    let task = tokio::spawn(receive(caller, image, body, blobs, expected));
    match task.await {
        Ok(result) => result.map(|()| StatusCode::NO_CONTENT.into_response()),
        Err(error) => Err(internal("an image upload task failed", error)),
    }
}

/// What an image's data must be: the hashes given at create or in the SDKs' properties,
/// and the size the client announced.
fn expected_of(image: &Image, size: Option<u64>) -> FaultResult<Expected> {
    let mut hashes: Vec<(HashAlgorithm, String)> = Vec::new();
    for (algorithm, value) in &image.spec.expected_hashes {
        let algorithm = HashAlgorithm::parse(algorithm)
            .map_err(|error| bad_request(format!("The image's expected hash: {error}")))?;
        hashes.push((algorithm, value.clone()));
    }
    for (property, algorithm) in OWNER_SPECIFIED_HASHES {
        if let Some(value) = image.spec.property(property) {
            hashes.push((*algorithm, value.to_owned()));
        }
    }
    Ok(Expected { hashes, size })
}

/// Streams the body into the blob store and settles the image either way.
async fn receive(
    caller: Caller,
    image: Image,
    body: Body,
    blobs: BlobStore,
    expected: Expected,
) -> FaultResult<()> {
    let uploading = BLOB_GATE.read().await;
    let (sender, reader) = chunk_channel(UPLOAD_QUEUE);
    let writer = tokio::task::spawn_blocking(move || blobs.put(reader, &expected));
    let mut stream = body.into_data_stream();
    loop {
        match stream.next().await {
            Some(Ok(bytes)) => {
                // The writer stops reading only when it failed; its error says why.
                if !sender.send(bytes).await {
                    break;
                }
            }
            Some(Err(error)) => {
                sender.fail(io::Error::other(error.to_string())).await;
                break;
            }
            None => {
                sender.finish().await;
                break;
            }
        }
    }
    let stored = writer.await;
    let info = match stored {
        Ok(Ok(info)) => info,
        Ok(Err(error)) => {
            requeue(&caller, &image.id).await;
            return Err(refused(&image.id, error));
        }
        Err(error) => {
            requeue(&caller, &image.id).await;
            return Err(internal("an image writer task failed", error));
        }
    };
    let activated = activate(&caller, &image.id, &info).await;
    drop(uploading);
    if activated.is_err() {
        // The image went away or changed meanwhile: its blob may be unused now.
        caller.release_blobs().await;
    }
    activated
}

/// Why data was not stored, for the client.
fn refused(id: &str, error: BlobError) -> Fault {
    match error {
        BlobError::Mismatch { .. } | BlobError::SizeMismatch { .. } => {
            tracing::info!(id, %error, "refused image data");
            bad_request(format!(
                "The uploaded data of image {id} was refused and nothing was stored: {error}."
            ))
        }
        BlobError::Read(source) => {
            tracing::info!(id, error = %source, "image upload broken off");
            bad_request(format!(
                "Error in the uploaded data of image {id}: {source}; nothing was stored."
            ))
        }
        other => internal("storing image data failed", other),
    }
}

/// Puts an image whose upload failed back to `queued` (if it is still `saving`).
async fn requeue(caller: &Caller, id: &str) {
    let result = caller
        .update(id, EngineTarget::Status, |_, image| {
            if image.status.status != STATUS_SAVING {
                return Ok(false);
            }
            image.status.status = STATUS_QUEUED.to_owned();
            image.status.updated_at = Some(now());
            Ok(true)
        })
        .await;
    if let Err(fault) = result {
        tracing::warn!(id, message = %fault.message, "putting an image back to queued failed");
    }
}

/// Records stored data on the image.
async fn activate(caller: &Caller, id: &str, info: &BlobInfo) -> FaultResult<()> {
    let digest = info.digest.to_string();
    let result = caller
        .update(id, EngineTarget::Status, |_, image| {
            if image.status.status != STATUS_SAVING {
                return Err(conflict(format!(
                    "Image {id} changed to {} during the upload.",
                    image.status.status
                )));
            }
            let status = &mut image.status;
            status.status = STATUS_ACTIVE.to_owned();
            status.size = Some(info.size);
            status.virtual_size = None;
            status.checksum = Some(info.md5.clone());
            status.os_hash_algo = Some(HashAlgorithm::Sha512.as_str().to_owned());
            status.os_hash_value = Some(info.sha512.clone());
            status.digest = Some(digest.clone());
            status.updated_at = Some(now());
            Ok(true)
        })
        .await;
    match result {
        Ok(image) => {
            tracing::info!(id, digest = %digest, size = info.size, namespace = %image.namespace, "image data stored");
            Ok(())
        }
        Err(fault) => Err(fault),
    }
}

pub(super) async fn download(caller: Caller, Path(id): Path<String>) -> Result<Response, Fault> {
    caller.allow("download_image", None)?;
    let image = caller.find(&id).await?;
    match image.status.status.as_str() {
        STATUS_ACTIVE => {}
        "deactivated" if !caller.is_admin() => {
            return Err(forbidden(
                "The requested image has been deactivated. Image data download is forbidden.",
            ));
        }
        "deactivated" => {}
        // Glance answers an image without data with no content.
        _ => return Ok(StatusCode::NO_CONTENT.into_response()),
    }
    let Some(digest) = image
        .status
        .digest
        .as_deref()
        .and_then(|d| Digest::parse(d).ok())
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let path = caller.blobs()?.path(&digest);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|error| internal("opening an image blob failed", error))?;
    let length = file
        .metadata()
        .await
        .map_err(|error| internal("reading an image blob failed", error))?
        .len();
    let stream = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = BytesMut::with_capacity(DOWNLOAD_CHUNK);
        match file.read_buf(&mut buffer).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buffer.freeze()), Some(file))),
            // Stop after an error: the client sees a short body.
            Err(error) => Some((Err(error), None)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(checksum) = &image.status.checksum
        && let Ok(value) = HeaderValue::from_str(checksum)
    {
        headers.insert("content-md5", value);
    }
    Ok(response)
}

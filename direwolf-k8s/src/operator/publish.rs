//! The apply side of [`super::expose`]: makes a Session's stream Service and Gateway routes in
//! the load-balancer and gateway exposure modes, reports them in conditions, and deletes them
//! when the Session goes (called by the finalizer). In the relay mode it does nothing.
//!
//! Failures the installation must fix (a Gateway that does not exist, Gateway API kinds that are
//! not served, an object the API server refuses) end a Session whose stream has not started, so
//! the waiting client is told at once rather than at its launch timeout; a running stream keeps
//! going with the condition False (its objects are already in place).

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::config::{Exposure, GatewayExposure, LoadBalancerExposure};
use super::context::Context;
use super::decide::{Ending, OperatorStatus};
use super::error::Error;
use super::expose::{self, Address};
use crate::crd::{Session, SessionPorts, conditions, field_managers, reasons};
use crate::retry::has_status;

/// What publishing decided.
pub(crate) enum Outcome {
    /// In place; look again after `recheck` if given (a load-balancer address still awaited).
    Done { recheck: Option<Duration> },
    /// The Session ends.
    End(Ending),
}

/// Makes the Session's exposure objects for `ports` and records them in `status`.
pub(crate) async fn publish(
    session: &Session,
    ctx: &Context,
    ports: SessionPorts,
    status: &mut OperatorStatus,
    now: Timestamp,
) -> Result<Outcome, Error> {
    match &ctx.config.exposure {
        Exposure::Relay => Ok(Outcome::Done { recheck: None }),
        Exposure::LoadBalancer(lb) => load_balancer(session, ctx, ports, lb, status, now).await,
        Exposure::Gateway(gateway) => routes(session, ctx, ports, gateway, status, now).await,
    }
}

/// Whether the stream has started (the agent published its URL): then a failure is reported,
/// not an ending.
fn started(session: &Session) -> bool {
    session.status.as_ref().is_some_and(|s| s.stream_url.is_some())
}

/// The stream Service: read, else applied. `Err(message)`: the API server refused it.
async fn service(
    session: &Session,
    ctx: &Context,
    ports: SessionPorts,
    lb: Option<&LoadBalancerExposure>,
) -> Result<Result<Service, String>, Error> {
    let wanted = expose::stream_service(session, ports, lb).ok_or(Error::Malformed("uid"))?;
    let name = wanted.name_any();
    if let Some(existing) = ctx.get::<Service>(&name).await? {
        let uid = session.uid();
        let ours = existing
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == uid.as_ref());
        if ours {
            return Ok(Ok(existing));
        }
    }
    match ctx.apply(&name, &wanted, field_managers::OPERATOR_SERVICE).await {
        Ok(applied) => {
            info!(service = name, "stream Service applied");
            Ok(Ok(applied))
        }
        Err(err) => match err.refusal() {
            Some(message) => Ok(Err(format!(
                "the API server refused the stream Service {name}: {message}"
            ))),
            None => Err(err),
        },
    }
}

fn service_refused(message: String) -> Outcome {
    Outcome::End(Ending {
        step: Some((conditions::SERVICE_CREATED, reasons::SERVICE_CREATION_FAILED)),
        ..Ending::new(reasons::SERVICE_CREATION_FAILED, message)
    })
}

async fn load_balancer(
    session: &Session,
    ctx: &Context,
    ports: SessionPorts,
    lb: &LoadBalancerExposure,
    status: &mut OperatorStatus,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let generation = session.metadata.generation;
    let service = match service(session, ctx, ports, Some(lb)).await? {
        Ok(service) => service,
        Err(message) => return Ok(service_refused(message)),
    };
    let name = service.name_any();
    status.set_condition(
        conditions::SERVICE_CREATED,
        true,
        reasons::SERVICE_CREATED,
        &format!("LoadBalancer Service {name}"),
        generation,
        now,
    );
    let recheck = match expose::address(&service, lb, now) {
        Address::Assigned(ip) => {
            status.set_condition(
                conditions::LOAD_BALANCER_ADDRESS,
                true,
                reasons::SUCCESS,
                &ip,
                generation,
                now,
            );
            None
        }
        Address::Waiting => expose::address_recheck(&service, lb, now),
        Address::Failed { reason, message } => {
            warn!(service = name, reason, "{message}");
            status.set_condition(
                conditions::LOAD_BALANCER_ADDRESS,
                false,
                reason,
                &message,
                generation,
                now,
            );
            // Looked at again when it changes: the Service is not watched, so poll slowly.
            Some(Duration::from_secs(30))
        }
    };
    Ok(Outcome::Done { recheck })
}

/// The API of `resource` in namespace `ns`.
fn dynamic(ctx: &Context, ns: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), ns, resource)
}

/// Whether the configured Gateway can be used: `Err(message)` when it does not exist or the
/// Gateway API is not served (or readable).
async fn check_gateway(ctx: &Context, gateway: &GatewayExposure) -> Result<Result<(), String>, Error> {
    let api = dynamic(ctx, &gateway.namespace, &expose::gateway_resource());
    match ctx.retry.run("get the Gateway", || api.get(&gateway.name)).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => {
            let why = if status.code == 404 && status.reason == "NotFound" && status.details.is_some() {
                format!("Gateway {gateway} does not exist")
            } else {
                format!("Gateway {gateway} cannot be read: {}", status.message)
            };
            Ok(Err(why))
        }
        Err(err) => Err(Error::api(format!("get Gateway {gateway}"))(err)),
    }
}

fn gateway_failed(
    session: &Session,
    status: &mut OperatorStatus,
    message: String,
    now: Timestamp,
) -> Outcome {
    if started(session) {
        warn!("{message}");
        status.set_condition(
            conditions::ROUTES_CREATED,
            false,
            reasons::GATEWAY_CONFIGURATION_FAILED,
            &message,
            session.metadata.generation,
            now,
        );
        return Outcome::Done {
            recheck: Some(Duration::from_secs(30)),
        };
    }
    Outcome::End(Ending {
        step: Some((conditions::ROUTES_CREATED, reasons::GATEWAY_CONFIGURATION_FAILED)),
        ..Ending::new(reasons::GATEWAY_CONFIGURATION_FAILED, message)
    })
}

async fn routes(
    session: &Session,
    ctx: &Context,
    ports: SessionPorts,
    gateway: &GatewayExposure,
    status: &mut OperatorStatus,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let generation = session.metadata.generation;
    if let Err(message) = check_gateway(ctx, gateway).await? {
        return Ok(gateway_failed(session, status, message, now));
    }
    let service = match service(session, ctx, ports, None).await? {
        Ok(service) => service,
        Err(message) => return Ok(service_refused(message)),
    };
    status.set_condition(
        conditions::SERVICE_CREATED,
        true,
        reasons::SERVICE_CREATED,
        &format!("ClusterIP Service {}", service.name_any()),
        generation,
        now,
    );
    let done = status
        .conditions
        .iter()
        .any(|c| c.type_ == conditions::ROUTES_CREATED && c.status == "True");
    if !done {
        let bodies = expose::routes(session, ports, gateway).ok_or(Error::Malformed("uid"))?;
        let params = PatchParams::apply(field_managers::OPERATOR_ROUTES).force();
        let ns = ctx.config.namespace.as_str();
        for body in &bodies {
            let tcp = body["kind"] == "TCPRoute";
            let resource = if tcp {
                expose::tcp_route_resource()
            } else {
                expose::udp_route_resource()
            };
            let api = dynamic(ctx, ns, &resource);
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let patch = Patch::Apply(body);
            match ctx
                .retry
                .run("apply a route", || api.patch(&name, &params, &patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status_)) if matches!(status_.code, 400 | 403 | 404 | 422) => {
                    let message = format!(
                        "the API server refused {} {name}: {} (are the Gateway API's experimental TCPRoute and UDPRoute installed?)",
                        resource.kind, status_.message
                    );
                    return Ok(gateway_failed(session, status, message, now));
                }
                Err(err) => return Err(Error::api(format!("apply {} {name}", resource.kind))(err)),
            }
        }
        info!(gateway = %gateway, "routes applied");
    }
    status.set_condition(
        conditions::ROUTES_CREATED,
        true,
        reasons::SUCCESS,
        &format!("TCPRoute and UDPRoutes on Gateway {gateway}"),
        generation,
        now,
    );
    Ok(Outcome::Done { recheck: None })
}

/// Deletes the Session's exposure objects of the configured mode (already gone is fine).
pub(crate) async fn withdraw(session: &Session, ctx: &Context) -> Result<(), Error> {
    let name = session.name_any();
    if matches!(ctx.config.exposure, Exposure::Relay) {
        return Ok(());
    }
    if let Exposure::Gateway(_) = ctx.config.exposure {
        let ns = ctx.config.namespace.as_str();
        let params = DeleteParams::background();
        for (stream, _, protocol) in expose::streams(placeholder_ports()) {
            let resource = if protocol == "TCP" {
                expose::tcp_route_resource()
            } else {
                expose::udp_route_resource()
            };
            let api = dynamic(ctx, ns, &resource);
            let route = expose::route_name(&name, stream);
            match ctx
                .retry
                .run("delete a route", || api.delete(&route, &params))
                .await
            {
                Ok(_) => {}
                Err(err) if has_status(&err, 404) => {}
                Err(err) => return Err(Error::api(format!("delete {} {route}", resource.kind))(err)),
            }
        }
    }
    ctx.delete::<Service>(&expose::service_name(&name)).await?;
    Ok(())
}

/// Any ports: [`expose::streams`] names the streams whatever the numbers.
fn placeholder_ports() -> SessionPorts {
    let one = std::num::NonZeroU16::MIN;
    SessionPorts {
        rtsp: one,
        control: one,
        video_rtp: one,
        audio_rtp: one,
    }
}

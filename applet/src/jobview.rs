//! Progress of a transaction in KDE's job tracker (`org.kde.JobViewServer` on the session bus),
//! the way Plasma shows file copies and Discover's updates.
//!
//! `requestView` returns a `/JobViewServer/JobView_N` object (`org.kde.JobViewV2`) that takes
//! `setInfoMessage`, `setPercent`, `setDescriptionField` and finally `terminate`. The view is
//! requested Killable, so the tracker offers a cancel button; its `cancelRequested` signal is
//! read by [`JobView::cancel_requested`] and becomes the transaction's `Cancel()`. When nothing
//! owns `org.kde.JobViewServer` (another desktop, a headless session) [`JobViews::start`]
//! answers `None` and a notification with a progress bar shows the progress instead.

use futures_util::StreamExt;
use zbus::message::Type as MessageType;
use zbus::names::BusName;
use zbus::zvariant::OwnedObjectPath;
use zbus::{Connection, MatchRule, MessageStream, proxy};

use crate::notify::APP_NAME;

const SERVER_NAME: &str = "org.kde.JobViewServer";
/// `requestView` capabilities: Killable (`KJob::Killable`), the tracker offers "Cancel".
const KILLABLE: i32 = 0x1;
const VIEW_INTERFACE: &str = "org.kde.JobViewV2";

#[proxy(
    interface = "org.kde.JobViewServer",
    default_service = "org.kde.JobViewServer",
    default_path = "/JobViewServer"
)]
trait JobViewServer {
    #[zbus(name = "requestView")]
    fn request_view(
        &self,
        app_name: &str,
        app_icon_name: &str,
        capabilities: i32,
    ) -> zbus::Result<OwnedObjectPath>;
}

#[proxy(
    interface = "org.kde.JobViewV2",
    default_service = "org.kde.JobViewServer"
)]
trait JobViewV2 {
    #[zbus(name = "terminate")]
    fn terminate(&self, error_message: &str) -> zbus::Result<()>;
    #[zbus(name = "setInfoMessage")]
    fn set_info_message(&self, message: &str) -> zbus::Result<()>;
    #[zbus(name = "setPercent")]
    fn set_percent(&self, percent: u32) -> zbus::Result<()>;
    #[zbus(name = "setDescriptionField")]
    fn set_description_field(&self, number: u32, name: &str, value: &str) -> zbus::Result<bool>;
}

/// Opens job views on the session bus.
pub struct JobViews {
    session: Connection,
}

/// One job in the tracker.
pub struct JobView {
    view: JobViewV2Proxy<'static>,
    /// The view's `cancelRequested` (the user pressed the tracker's cancel button).
    cancels: Option<MessageStream>,
    /// What the tracker shows now (calls that change nothing are not made).
    shown: (u32, String),
}

impl JobViews {
    pub fn new(session: &Connection) -> JobViews {
        JobViews {
            session: session.clone(),
        }
    }

    /// A new job titled `title` listing `packages`, or `None` when no job tracker runs.
    pub async fn start(&self, title: &str, packages: &[String]) -> Option<JobView> {
        let dbus = zbus::fdo::DBusProxy::new(&self.session).await.ok()?;
        let name = BusName::try_from(SERVER_NAME).ok()?;
        if !dbus.name_has_owner(name).await.unwrap_or(false) {
            return None;
        }
        let server = JobViewServerProxy::builder(&self.session)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .ok()?;
        let path = match server
            .request_view(APP_NAME, "system-software-update", KILLABLE)
            .await
        {
            Ok(path) => path,
            Err(e) => {
                tracing::warn!(error = %e, "the job tracker refused a view");
                return None;
            }
        };
        let view = JobViewV2Proxy::builder(&self.session)
            .path(path)
            .ok()?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .ok()?;
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface(VIEW_INTERFACE)
            .and_then(|b| b.member("cancelRequested"))
            .and_then(|b| b.path(view.inner().path().to_owned()))
            .map(|b| b.build());
        let cancels = match rule {
            Ok(rule) => MessageStream::for_match_rule(rule, &self.session, Some(8))
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "cannot watch cancelRequested"))
                .ok(),
            Err(_) => None,
        };
        let job = JobView {
            view,
            cancels,
            shown: (0, String::new()),
        };
        job.call("setInfoMessage", job.view.set_info_message(title).await);
        let names = packages.join(", ");
        let label = if packages.len() == 1 {
            "Package"
        } else {
            "Packages"
        };
        if !names.is_empty() {
            job.call(
                "setDescriptionField",
                job.view
                    .set_description_field(0, label, &names)
                    .await
                    .map(drop),
            );
        }
        Some(job)
    }
}

impl JobView {
    /// Show `percent` and what happens now.
    pub async fn progress(&mut self, percent: u32, message: &str) {
        if percent != self.shown.0 {
            self.shown.0 = percent;
            self.call("setPercent", self.view.set_percent(percent).await);
        }
        if message != self.shown.1 && !message.is_empty() {
            self.shown.1 = message.to_owned();
            self.call(
                "setDescriptionField",
                self.view
                    .set_description_field(1, "Now", message)
                    .await
                    .map(drop),
            );
        }
    }

    /// The next `cancelRequested` of this view; never resolves when it cannot be watched.
    pub async fn cancel_requested(&mut self) {
        let Some(cancels) = &mut self.cancels else {
            return std::future::pending().await;
        };
        loop {
            match cancels.next().await {
                Some(Ok(_)) => return,
                Some(Err(e)) => tracing::debug!(error = %e, "unreadable cancelRequested"),
                None => {
                    self.cancels = None;
                    return std::future::pending().await;
                }
            }
        }
    }

    /// End the job: success with `None`, else the error shown by the tracker.
    pub async fn finish(self, error: Option<&str>) {
        if error.is_none() && self.shown.0 != 100 {
            self.call("setPercent", self.view.set_percent(100).await);
        }
        self.call("terminate", self.view.terminate(error.unwrap_or("")).await);
    }

    fn call(&self, what: &str, result: zbus::Result<()>) {
        if let Err(e) = result {
            tracing::debug!(call = what, error = %e, "job view call failed");
        }
    }
}

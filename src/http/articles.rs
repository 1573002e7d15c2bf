//! Knowledge-base articles over REST (admins only). A change is stored and applied to the
//! running engine at once: only that article is re-embedded and re-indexed.

use actix_web::{HttpResponse, delete, get, put, web};

use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use crate::ai::AiError;
use crate::kb::Article;
use crate::knowledge::{self, ArticleInput, KnowledgeError};
use crate::startup::AppState;

impl From<KnowledgeError> for ApiError {
    fn from(e: KnowledgeError) -> Self {
        match e {
            KnowledgeError::Invalid(_) => ApiError::Invalid(e.to_string()),
            KnowledgeError::Store(e) => e.into(),
            KnowledgeError::Engine(AiError::Overloaded) => ApiError::Unavailable(
                "the change is stored, but the AI engine is busy: it is applied within seconds",
            ),
            KnowledgeError::Engine(e) => ApiError::Engine(e),
        }
    }
}

pub(super) fn engine(state: &AppState) -> Option<&std::sync::Arc<crate::ai::Engine>> {
    state.bot.as_ref().map(|bot| bot.engine())
}

/// Every article, by id.
#[utoipa::path(responses((status = 200, body = Vec<Article>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/articles")]
pub async fn list(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<Article>>, ApiError> {
    Ok(web::Json(state.chat.store().articles().await?))
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = Article), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/articles/{id}")]
pub async fn get_one(
    _admin: Admin,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<Article>, ApiError> {
    Ok(web::Json(state.chat.store().article(&id).await?))
}

/// Creates (201) or replaces (200) the article with this id; the running engine answers from
/// the new text from the next message on.
#[utoipa::path(params(("id" = String, Path)), request_body = ArticleInput, responses((status = 200, body = Article), (status = 201, body = Article), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
#[put("/articles/{id}")]
pub async fn replace(
    Admin(admin): Admin,
    id: web::Path<String>,
    body: web::Json<ArticleInput>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (article, created) =
        knowledge::put_article(state.chat.store(), engine(&state), &id, body.into_inner()).await?;
    tracing::info!(admin = %admin.id, article = %article.id, created, "article stored");
    Ok(if created {
        HttpResponse::Created().json(article)
    } else {
        HttpResponse::Ok().json(article)
    })
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/articles/{id}")]
pub async fn remove(
    Admin(admin): Admin,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    knowledge::delete_article(state.chat.store(), engine(&state), &id).await?;
    tracing::info!(admin = %admin.id, article = %id, "article deleted");
    Ok(HttpResponse::NoContent().finish())
}

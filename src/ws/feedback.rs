//! Ratings from the widget: thumbs up or down on one of the bot's answers, and a 1-to-5 score
//! for the conversation once it is resolved. Each is stored (replacing an earlier rating of the
//! same target), counted in the metrics, and acknowledged with a `rated` frame.

use crate::domain::{
    AnswerRating, ConversationId, CsatScore, FeedbackKind, MessageText, TextError,
};
use crate::protocol::{ErrorCode, FrameError, ServerFrame};
use crate::startup::AppState;
use crate::store::RateError;

/// What a widget rates.
pub(super) enum Rating {
    Answer { seq: i64, rating: AnswerRating },
    Conversation(CsatScore),
}

/// Stores a rating of the visitor's own conversation; the frame to answer with.
pub(super) async fn rate(
    state: &AppState,
    conversation: ConversationId,
    rating: Rating,
    comment: Option<String>,
) -> Result<ServerFrame<'static>, FrameError> {
    let max = state.settings.websocket.max_text_bytes;
    let comment = comment
        .filter(|c| !c.trim().is_empty())
        .map(|c| MessageText::parse(c, max))
        .transpose()
        .map_err(|e| {
            let code = match e {
                TextError::TooLong { .. } => ErrorCode::TooLarge,
                _ => ErrorCode::InvalidFrame,
            };
            FrameError::new(code, format!("comment: {e}"))
        })?;
    let comment = comment.as_ref().map(MessageText::as_str);
    let store = state.chat.store();
    let (stored, kind, seq, label) = match rating {
        Rating::Answer { seq, rating } => (
            store.rate_answer(conversation, seq, rating, comment).await,
            FeedbackKind::Answer,
            Some(seq),
            rating.as_str(),
        ),
        Rating::Conversation(score) => (
            store.rate_conversation(conversation, score, comment).await,
            FeedbackKind::Conversation,
            None,
            score.label(),
        ),
    };
    match stored {
        Ok(()) => {
            state.metrics.rated(kind.as_str(), label);
            Ok(ServerFrame::Rated { kind, seq })
        }
        Err(RateError::NotFound(what)) => Err(FrameError::new(
            ErrorCode::NotFound,
            format!("{what} not found in this conversation"),
        )),
        Err(e @ RateError::NotAnAnswer) => {
            Err(FrameError::new(ErrorCode::NotAnAnswer, e.to_string()))
        }
        Err(e @ RateError::NotResolved) => {
            Err(FrameError::new(ErrorCode::NotResolved, e.to_string()))
        }
        Err(RateError::Store(e)) => {
            tracing::error!(error = ?e, "storing a rating failed");
            Err(FrameError::new(
                ErrorCode::Internal,
                "the server could not do that; try again",
            ))
        }
    }
}

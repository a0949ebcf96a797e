/* vcac libcacard-compatible API: the process-wide event queue. */
#ifndef EVENT_H
#define EVENT_H 1

#include "eventt.h"
#include "vreadert.h"
#include "vcardt.h"

/* New event holding its own references; free with vevent_delete or hand
 * it to vevent_queue_vevent. */
VEvent *vevent_new(VEventType type, VReader *reader, VCard *card);
void vevent_delete(VEvent *);

/* Queue (takes ownership) / reset the queue. */
void vevent_queue_vevent(VEvent *);
void vevent_queue_init(void);

/* Dequeue: blocking, and non-blocking (NULL when empty). The caller owns
 * the event returned. */
VEvent *vevent_wait_next_vevent(void);
VEvent *vevent_get_next_vevent(void);

#endif

/*
 * list: an intrusive doubly linked list (a node embedded in its owner), as in h2o and the
 * Linux kernel. No allocation per insertion; O(1) unlink from anywhere.
 */
#ifndef ROSTRUM_UTIL_LIST_H
#define ROSTRUM_UTIL_LIST_H

#include <stddef.h>

struct list_node {
    struct list_node *prev, *next;
};

#define LIST_INIT(l) ((struct list_node){&(l), &(l)})
#define list_entry(node, type, member) ((type *)((char *)(node) - offsetof(type, member)))
#define list_for_each_safe(pos, tmp, head)                                                         \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

static inline void list_init(struct list_node *l)
{
    l->prev = l->next = l;
}

static inline int list_empty(const struct list_node *l)
{
    return l->next == l;
}

/* 1 if <n> is linked into some list (nodes are kept self-linked when out of any list). */
static inline int list_linked(const struct list_node *n)
{
    return n->next != NULL && n->next != n;
}

static inline void list_insert_tail(struct list_node *l, struct list_node *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static inline void list_unlink(struct list_node *n)
{
    if (!list_linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#endif
